"""The OpenAPI 3.1 document at /api/v1/openapi.json.

Each API module describes its own paths next to its views with
``document(path, spec)`` (usually built with ``operation``) and its shared
schemas with ``schema(name, spec)``, so the document cannot drift away from
the code that serves it. ``operation`` adds what every token-protected
operation shares: its scope as the security requirement, and the problem
responses of authentication, scopes and the rate limit.
"""

from __future__ import annotations

import re

from newsletter.db import session_scope
from newsletter.extensions import settings
from newsletter.issues.service import sections
from newsletter.models import API_SCOPES

PATHS: dict[str, dict] = {}
PROBLEM_MEDIA = "application/problem+json"
SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `error` and `message` repeat the short code and the detail "
        "for older clients.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "error": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "the input that was refused, when one was"},
            "required_scope": {"type": "string", "enum": list(API_SCOPES)},
        },
    },
}
ERROR_TEXT = {
    400: "invalid input (`field` names the culprit)",
    401: "missing, unknown or revoked bearer token",
    403: "the token lacks this operation's scope, or the API is closed",
    404: "no such resource",
    409: "the resource's state does not allow this (the detail says why); or the Idempotency-Key is in use, "
    "or was used with a different request",
    412: "If-Match names another version of the resource",
    413: "the body is too large",
    415: "the body is not JSON",
    422: "well-formed, but refused by a rule the schema cannot express (the detail says which)",
    428: "If-Match is required on this operation",
    429: "this token's rate limit is reached (see Retry-After)",
}


TOPIC = {"$ref": "#/components/schemas/Topic"}
# Character classes spelled out, so every regex engine (Python's here, the
# fuzzer's, a client's ECMAScript) reads them alike: ``\\s`` differs between them.
SPACE = "\\x09-\\x0d\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"  # str.isspace()
CONTROL = "\\x00-\\x08\\x0e-\\x1f\\x7f"  # what content.sanitise removes (and \\x0b \\x0c, spaces anyway)
NOT_SPACE = f"[^{SPACE}]"  # at least one character that str.strip() keeps
VISIBLE = f"[^{SPACE}{CONTROL}]"  # at least one character that clean_text keeps
HTTP_URL = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://[^{SPACE}{CONTROL}/?#@]+(?:[/?#][^{SPACE}{CONTROL}]*)?$"  # check_url's shape
)


def current_topics() -> list[str]:
    """The section slugs readers may choose now (the Topic enum)."""
    with session_scope() as session:
        return [t.slug for t in sections(session, settings())]


def resolved_schemas() -> dict:
    """The shared schemas with ``Topic`` as the enum of the current sections:
    topics are checked against the same list the server uses."""
    topics = current_topics()
    one = "|".join(re.escape(t) for t in topics)
    listed = f"^[\\s,;|]*(?:(?:{one})\\s*(?:[,;|][\\s,;|]*|$))*$" if topics else "^[\\s,;|]*$"
    return {
        **SCHEMAS,
        "Topic": {"type": "string", "enum": topics, "description": "a section slug"},
        "TopicList": {
            "type": "string",
            "pattern": listed,
            "description": "section slugs separated by , ; or |",
        },
    }


def document(path: str, spec: dict) -> None:
    PATHS.setdefault(path, {}).update(spec)


def schema(name: str, spec: dict) -> None:
    SCHEMAS[name] = spec


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def problem(status: int, text: str | None = None) -> dict:
    return {"description": text or ERROR_TEXT[status], "content": {PROBLEM_MEDIA: {"schema": ref("Problem")}}}


def json_content(schema_spec: dict) -> dict:
    return {"application/json": {"schema": schema_spec}}


KEY_PATTERN = "^[\\x21-\\x7e](?:[\\x20-\\x7e]*[\\x21-\\x7e])?$"  # printable ASCII, no outer spaces
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any 1–200 printable ASCII characters, new per intended action. A retry with the same key "
    "and request gets the first answer again (with `Idempotent-Replayed: true`) and the action runs once.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN},
}
PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "next_cursor of the previous page (opaque)",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
]


def page_of(item: dict) -> dict:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": item}, "next_cursor": {"type": ["string", "null"]}},
    }


def operation(
    operation_id: str,
    summary: str,
    *,
    scope: str,
    responses: dict,
    description: str = "",
    parameters: list | None = None,
    body: dict | None = None,
    body_required: bool = True,
    errors: tuple[int, ...] = (),
    idempotent: bool = False,
    if_match: str | None = None,
) -> dict:
    """One token-protected operation. ``if_match``: None, "optional" or "required"."""
    params = list(parameters or [])
    if idempotent:
        params.append(IDEMPOTENCY_KEY)
    codes = set(errors) | {401, 403, 429}
    if idempotent:
        codes |= {400, 409}
    if if_match:
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": if_match == "required",
                "description": "the ETag of the version you read; `*` matches any",
                "schema": {"type": "string", "minLength": 1},
            }
        )
        codes |= {412} | ({428} if if_match == "required" else set())
    spec = {
        "operationId": operation_id,
        "summary": summary,
        "security": [{"bearer": [scope]}],
        "responses": {**responses, **{str(c): problem(c) for c in sorted(codes)}},
    }
    if description:
        spec["description"] = description
    if params:
        spec["parameters"] = params
    if body is not None:
        spec["requestBody"] = {"required": body_required, "content": json_content(body)}
    return spec


def openapi_document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GET THE SIGNAL API",
            "version": "1",
            "description": "Everything an editor does, over JSON, with scoped bearer tokens. Errors are RFC 9457 "
            "problem details; lists are cursor pages; updates take If-Match; POSTs that create or send take "
            "Idempotency-Key. Scopes: " + ", ".join(API_SCOPES) + ".",
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`newsletter token create --name … --scope …`, or the editor's API tokens page",
                }
            },
            "schemas": resolved_schemas(),
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(PATHS.items())),
    }
