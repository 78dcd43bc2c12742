"""API views shared by every resource: the OpenAPI document.

Resources live in their own modules (subscribers.py, articles.py), imported
by the package so their routes register on the blueprint.
"""

from newsletter.api import bp
from newsletter.api.openapi import openapi_document
from newsletter.app import settings


@bp.get("/openapi.json")
def openapi():
    return openapi_document(settings().base_url)
