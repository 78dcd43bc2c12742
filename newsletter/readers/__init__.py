"""Public pages: subscribe, confirm, preferences, unsubscribe, archive."""

from flask import Blueprint

bp = Blueprint("readers", __name__)

from newsletter.readers import archive, outbox, views  # noqa: E402,F401
