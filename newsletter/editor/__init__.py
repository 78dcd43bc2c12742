"""The editors' workspace (login required on every route)."""

from flask import Blueprint

bp = Blueprint("editor", __name__)

from newsletter.editor import (  # noqa: E402,F401
    auth,
    views,
    views_articles,
    views_issues,
    views_outbox,
    views_subscribers,
)
