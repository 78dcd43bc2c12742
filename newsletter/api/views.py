"""API views shared by every resource: the OpenAPI document.

Resources live in their own modules (subscribers.py, articles.py), imported
by the package so their routes register on the blueprint.
"""

from flask import Blueprint

from newsletter.api.openapi import openapi_document
from newsletter.extensions import settings

bp = Blueprint("api", __name__)


@bp.get("/openapi.json")
def openapi():
    return openapi_document(settings().base_url)
