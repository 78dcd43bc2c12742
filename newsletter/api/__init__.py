"""JSON API v1 (bearer tokens from NEWSLETTER_API_TOKENS) and its OpenAPI document."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from newsletter.api import articles, subscribers, views  # noqa: E402,F401
