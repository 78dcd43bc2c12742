"""``/api/v1/subscribers``: the public subscribe endpoint, and the readers
for token holders.

``POST /subscribers`` without a bearer token is the subscribe form for
other sites: the same rules and rate limits as the form, one answer
whatever the address's state, and CORS only for ``NEWSLETTER_CORS_ORIGINS``
and ``NEWSLETTER_EMBED_ORIGINS`` (and our own pages); a browser request from
any other site is refused with a 403 that says so. The sign-up box
(``/embed.js``, ``/embed``) sends here with its form token, which makes the
sign-up count for the site that showed it.
With a token (scope ``subscribers:write``) it is a trusted add, as
``newsletter subscribers add`` does: active at once, with the consent
source and text the caller states. The other operations are faces over
``readers.service`` and ``readers.csv_io``, as the editor's pages are.
"""

from __future__ import annotations

from flask import request

from newsletter import tokens
from newsletter.api.auth import idempotency_key
from newsletter.api.conventions import check_schema
from newsletter.api.openapi import (
    IDEMPOTENCY_KEY,
    NOT_SPACE,
    PAGE_PARAMETERS,
    TOPIC,
    document,
    json_content,
    operation,
    page_of,
    problem,
    ref,
    schema,
)
from newsletter.api.problems import Problem, from_problem, problem_response
from newsletter.api.readers import trusted_create
from newsletter.api.views import bp
from newsletter.extensions import settings
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.readers import box, origins, service
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
    if origins.api_allowed(settings(), origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _error(message: str, status: int = 400, field: str | None = None):
    """A problem (RFC 9457) that keeps the keys the embed box reads: ``error``, ``message``, ``field``."""
    extra = {"field": field} if field else {}
    return problem_response(
        status, message, kind="invalid" if status == 400 else "unsupported-media-type", **extra
    )


@bp.route(PATH, methods=["POST", "OPTIONS"], endpoint="subscribers_create")
def subscribers_create():
    origin = request.headers.get("Origin")
    if origin and not origins.api_allowed(settings(), origin):
        return problem_response(
            403, origins.refusal(origin), kind="origin-not-allowed", error="origin not allowed"
        )
    if request.method == "OPTIONS":  # CORS preflight; headers added by _cors
        return "", 204
    body = request.get_json(silent=True) if request.mimetype == "application/json" else None
    if request.headers.get("Authorization") and isinstance(body, dict) and "consent_source" in body:
        return trusted_create()  # a token holder stating the consent they collected
    return public_subscribe()


@subscribe_limits
def public_subscribe():
    if request.mimetype != "application/json":
        return _error("send a JSON body with Content-Type: application/json", 415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("the body must be a JSON object")
    try:
        check_schema(body, ref("SubscribeRequest"))
        idempotency_key()  # only checked here: without a token there is nothing to key it to
    except Problem as exc:
        return from_problem(exc)
    if "form_token" in body:  # the sign-up box
        return _from_box(body)
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


def _from_box(body: dict):
    """A sign-up through the box: the body fits the document, so what the box's
    own rules refuse (its token, a topic it asked for) is a 422."""
    signup = box.BoxSignup.from_mapping(body, body.get("topics") or ())
    try:
        box.subscribe_from_box(settings(), signup, request.remote_addr)
    except tokens.TokenExpired:
        return problem_response(422, box.MESSAGES["expired"], kind="refused", field="form_token")
    except tokens.TokenError:
        return problem_response(422, box.MESSAGES["invalid"], kind="refused", field="form_token")
    except service.InvalidInput as exc:
        return problem_response(422, str(exc), kind="refused", field=exc.field)
    return {**ACCEPTED, "message": box.MESSAGES["accepted"]}, 202


NAME = {
    "type": "string",
    "maxLength": 200,
    "pattern": "^[^\\x00-\\x1f\\x7f\\u2028\\u2029]*$",
    "description": "No line breaks or control characters.",
}
schema(
    "SubscribeRequest",
    {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "name": NAME,
            "topics": {
                "anyOf": [{"type": "array", "items": TOPIC}, ref("TopicList")],
                "description": "Section slugs; empty or all of them means every section.",
            },
            "consent_text": {"type": "string", "description": "The text the reader agreed to on your form."},
            "website": {
                "type": "string",
                "description": "honeypot: leave empty (a filled one is dropped silently)",
            },
            "form_token": {
                "type": "string",
                "description": "The sign-up box's signed form token (sent by /embed.js); counts the sign-up "
                "for the site that showed the box. Expired or forged: 422.",
            },
            "timezone": {
                "description": (
                    "Any value (never an error). The reader's IANA time zone, e.g. from a browser's "
                    "Intl.DateTimeFormat().resolvedOptions().timeZone, "
                    "for local-time delivery. An unknown zone is not an error: the reader gets the issue at "
                    "the newsletter's time (NEWSLETTER_TIMEZONE) and the fallback is counted."
                ),
            },
        },
    },
)
schema(
    "TrustedSubscribeRequest",
    {
        "type": "object",
        "required": ["email", "consent_source", "consent_text"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "name": NAME,
            "topics": {"type": "array", "items": TOPIC},
            "timezone": {
                "type": "string",
                "description": "IANA zone; an unknown one falls back to the newsletter's (counted)",
            },
            "consent_source": {"type": "string", "enum": list(service.SOURCES)},
            "consent_text": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2000,
                "pattern": NOT_SPACE,
                "description": "what the reader agreed to, as they saw it",
            },
            "double_opt_in": {
                "type": "boolean",
                "default": False,
                "description": "true: pending, with a confirmation mail (the public path's rules)",
            },
        },
    },
)
_CREATED = {
    "description": "the reader (201 new, 200 already there)",
    "content": json_content(ref("Subscriber")),
}
document(
    PATH,
    {
        "post": {
            "operationId": "subscribe",
            "summary": "Subscribe a reader: public double opt-in, or a trusted add with a token",
            "description": (
                "Without a token (or without consent_source), the public endpoint for forms embedded on other "
                "sites: CORS for NEWSLETTER_CORS_ORIGINS and NEWSLETTER_EMBED_ORIGINS (a browser request from any other site: 403); a confirmation email; the same 202 whether the address "
                "is new, pending, already subscribed or suppressed; rate limited per client and per address. "
                "With a `subscribers:write` token and `consent_source`, a trusted add (as `newsletter "
                "subscribers add`): active at once, consent recorded; takes Idempotency-Key."
            ),
            "security": [{}, {"bearer": ["subscribers:write"]}],
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {
                "required": True,
                "content": json_content({"anyOf": [ref("SubscribeRequest"), ref("TrustedSubscribeRequest")]}),
            },
            "responses": {
                "202": {
                    "description": "Accepted; a confirmation email may be on its way.",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {"status": {"type": "string"}, "message": {"type": "string"}},
                        }
                    ),
                },
                "201": _CREATED,
                "200": _CREATED,
                **{str(c): problem(c) for c in (400, 401, 403, 409, 413, 415, 422)},
                "429": problem(
                    429, "Too many requests from this client, for this address, or for this token."
                ),
            },
        },
        "get": operation(
            "listSubscribers",
            "List and search readers, oldest first",
            scope="subscribers:read",
            parameters=[
                *PAGE_PARAMETERS,
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(SUBSCRIBER_STATUSES)},
                },
                {
                    "name": "q",
                    "in": "query",
                    "description": "address or name contains",
                    "schema": {"type": "string"},
                },
            ],
            responses={"200": {"description": "a page", "content": json_content(page_of(ref("Subscriber")))}},
            errors=(400,),
        ),
    },
)
