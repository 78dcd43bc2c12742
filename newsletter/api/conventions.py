"""The API's shared conventions, one place each: JSON bodies, cursor pages,
ETag / If-Match preconditions.

* Cursor pagination: ``?limit=`` (1–200, default 50) and ``?cursor=``, an
  opaque string from the previous page's ``next_cursor`` (also sent as a
  ``Link: <…>; rel="next"`` header). Keyset pages on the row id, so a page
  costs the same on the millionth row as on the first.
* ``ETag`` on every single resource; ``If-Match`` on updates: a mismatch is
  412. On ``PATCH /issues/{number}`` the header is required (428 without it)
  because an editor and an agent edit the same issue; on articles and
  subscribers it is optional.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlencode

from flask import request
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from newsletter.api.openapi import resolved_schemas
from newsletter.api.problems import Problem
from newsletter.db import MAX_INTEGER

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def json_object(schema: dict | None = None) -> dict:
    """The request's JSON object body, or a 415/400 problem; checked against
    ``schema`` (the one the OpenAPI document shows), so the server refuses
    exactly what the document says is invalid."""
    if request.mimetype != "application/json":
        raise Problem(
            415, "send a JSON body with Content-Type: application/json", kind="unsupported-media-type"
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object", kind="invalid")
    if schema is not None:
        check_schema(body, schema)
    return whole_numbers(body)


def whole_numbers(value):
    """JSON Schema counts 3.0 as an integer; so does the API (the services want ``int``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    return value


def check_schema(value, schema: dict) -> None:
    """400 with the first violation (and the field it is in) unless ``value`` fits ``schema``."""
    validator = Draft202012Validator({**schema, "components": {"schemas": resolved_schemas()}})
    error = best_match(validator.iter_errors(value))
    if error is not None:
        path = [str(p) for p in error.absolute_path]
        field = path[0] if path else None  # the body's property (its inner place is in the detail)
        where = f"{'.'.join(path)}: " if path else ""
        raise Problem(
            400, f"{where}{error.message}"[:300], kind="invalid", **({"field": field} if field else {})
        )


def only_fields(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem(
            400, f"unknown field(s): {', '.join(unknown)[:200]}", kind="invalid", field=unknown[0][:80]
        )


# --- cursor pages -------------------------------------------------------------


def one_rule(bp, rule: str, endpoint: str, views: dict):
    """Route every method of ``rule`` through one URL rule: with one rule per
    method, werkzeug answers an id out of the database's range with a 405
    (it skips the converter of rules for other methods); with one, a 404."""

    def dispatch(**kwargs):
        return views[request.method if request.method != "HEAD" else "GET"](**kwargs)

    dispatch.scopes = {method: getattr(view, "required_scope", None) for method, view in views.items()}
    bp.add_url_rule(rule, endpoint=endpoint, view_func=dispatch, methods=list(views))


def page_args() -> tuple[int, int | None]:
    """(limit, id to continue after) from ``?limit=&cursor=``."""
    raw_limit = request.args.get("limit")
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise Problem(
                400, f"limit must be a whole number from 1 to {MAX_LIMIT}", kind="invalid", field="limit"
            )
        limit = int(raw_limit)
    else:
        limit = DEFAULT_LIMIT
    cursor = request.args.get("cursor")
    return limit, (decode_cursor(cursor) if cursor is not None else None)


CURSOR_PATTERN = "^[0-9]{1,18}$"


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str) -> int:
    """A cursor is the key of the last row of the previous page: treat it as opaque."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise Problem(400, "the cursor is not one this API gave out", kind="invalid", field="cursor")
    # Past the largest key a column holds (PostgreSQL's INTEGER refuses the comparison):
    # the same as the largest key, an empty page.
    return min(int(cursor), MAX_INTEGER)


def enum_arg(name: str, allowed) -> str | None:
    """A query parameter that must be one of ``allowed`` (absent: None; present but empty: 400)."""
    if name not in request.args:
        return None
    value = request.args[name]
    if value not in allowed:
        raise Problem(400, f"{name} must be one of {', '.join(allowed)}", kind="invalid", field=name)
    return value


def paged(items: list[dict], rows: list, limit: int, key) -> tuple[dict, int, dict]:
    """The page body (``data``, ``next_cursor``) for ``rows`` fetched with ``limit + 1``."""
    more = len(rows) > limit
    next_cursor = encode_cursor(key(rows[limit - 1])) if more else None
    headers = {}
    if next_cursor:
        args = {k: v for k, v in request.args.items() if k != "cursor"} | {"cursor": next_cursor}
        headers["Link"] = f'<{request.base_url}?{urlencode(args)}>; rel="next"'
    return {"data": items[:limit], "next_cursor": next_cursor}, 200, headers


# --- ETag / If-Match ------------------------------------------------------------


def etag_of(representation: dict) -> str:
    digest = hashlib.sha256(json.dumps(representation, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(current: str, *, required: bool) -> None:
    """412 when If-Match names another version; 428 when it is required and missing."""
    header = request.headers.get("If-Match")
    if header is not None and not header.strip():
        raise Problem(
            400, "If-Match is empty; send the ETag you read, or *", kind="invalid", field="If-Match"
        )
    if header is None:
        if required:
            raise Problem(
                428,
                "send If-Match with the ETag of the version you read (GET it first), "
                "so a change made meanwhile is not overwritten",
                kind="precondition-required",
            )
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags:
        return
    if current not in tags and f"W/{current}" not in tags:
        raise Problem(
            412,
            "the resource changed since you read it; GET it again and re-apply your change",
            kind="precondition-failed",
            headers={"ETag": current},
        )
