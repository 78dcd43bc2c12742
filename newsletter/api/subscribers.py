"""``POST /api/v1/subscribers``: the subscribe form for other sites.

Public (no bearer token: it sits behind forms embedded on other sites), with
the same rules and rate limits as the form, one answer whatever the address's
state, and CORS only for ``NEWSLETTER_CORS_ORIGINS``.
"""

from __future__ import annotations

from flask import request

from newsletter.api.openapi import document, schema
from newsletter.api.views import bp
from newsletter.extensions import settings
from newsletter.readers import service
from newsletter.readers.limits import subscribe_limits

PATH = "/subscribers"
ACCEPTED = {
    "status": "accepted",
    "message": "If this address can receive our mail, a confirmation link is on its way.",
}


def _is_this_route() -> bool:
    return request.url_rule is not None and request.url_rule.endpoint == "api.subscribers_create"


@bp.after_request
def _cors(response):
    """Allow configured origins only, on this route only (errors included, so
    the embedding page can read a 400 or 429)."""
    if not _is_this_route():
        return response
    origin = request.headers.get("Origin", "")
    response.headers.add("Vary", "Origin")
    if origin and origin in settings().cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _error(message: str, status: int = 400, field: str | None = None):
    body = {"error": "invalid" if status == 400 else "error", "message": message}
    if field:
        body["field"] = field
    return body, status


@bp.route(PATH, methods=["POST", "OPTIONS"], endpoint="subscribers_create")
@subscribe_limits
def subscribers_create():
    if request.method == "OPTIONS":  # CORS preflight; headers added by _cors
        return "", 204
    if request.mimetype != "application/json":
        return _error("send a JSON body with Content-Type: application/json", 415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("the body must be a JSON object")
    if body.get("website"):  # the same honeypot as the form, for embedded forms that copy it
        return ACCEPTED, 202
    try:
        service.subscribe(
            settings(),
            email=body.get("email"),
            name=body.get("name") or "",
            topics=body.get("topics") or (),
            timezone=body.get("timezone"),
            source="api",
            consent_text=str(body.get("consent_text") or service.CONSENT_TEXT)[:2000],
            ip=request.remote_addr,
        )
    except service.InvalidInput as exc:
        return _error(str(exc), field=exc.field)
    return ACCEPTED, 202


schema(
    "SubscribeRequest",
    {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "name": {"type": "string", "maxLength": 200, "description": "No line breaks."},
            "topics": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Section slugs; empty or all of them means every section.",
            },
            "consent_text": {"type": "string", "description": "The text the reader agreed to on your form."},
            "timezone": {
                "type": "string",
                "maxLength": 64,
                "description": (
                    "The reader's IANA time zone (a browser's Intl.DateTimeFormat().resolvedOptions().timeZone), "
                    "for local-time delivery. An unknown zone is not an error: the reader gets the issue at "
                    "the newsletter's time (NEWSLETTER_TIMEZONE) and the fallback is counted."
                ),
            },
        },
    },
)
document(
    PATH,
    {
        "post": {
            "summary": "Subscribe a reader (double opt-in)",
            "description": (
                "Public endpoint for forms embedded on other sites: no token; CORS for NEWSLETTER_CORS_ORIGINS. "
                "Sends a confirmation email. The answer is the same whether the address is new, pending, "
                "already subscribed or suppressed. Rate limited per client and per address."
            ),
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/SubscribeRequest"}}
                },
            },
            "responses": {
                "202": {"description": "Accepted; a confirmation email may be on its way."},
                "400": {
                    "description": "Invalid input (field names the culprit).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
                "413": {"description": "Body too large."},
                "415": {"description": "Not JSON."},
                "429": {"description": "Too many requests from this client or for this address."},
            },
        }
    },
)
