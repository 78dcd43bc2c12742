"""Bounces and complaints: provider webhooks, the DSN mailbox, suppression."""

from flask import Blueprint

bp = Blueprint("feedback", __name__)

from newsletter.feedback import views  # noqa: E402,F401
