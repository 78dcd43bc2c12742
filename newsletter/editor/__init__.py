"""The editors' workspace (login required on every route)."""

from flask import Blueprint

bp = Blueprint("editor", __name__)

from newsletter.editor import auth, views  # noqa: E402,F401
