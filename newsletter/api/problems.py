"""RFC 9457 problem details: every error the API answers.

``Problem`` is raised by the API's views and helpers; ``problem_response``
turns it (or any werkzeug HTTPException under /api/) into an
``application/problem+json`` body with ``type``, ``title``, ``status`` and
``detail``. Two extension members keep the shape older clients (the embed
box) read: ``error`` (a short code) and ``message`` (= detail).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from flask import Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "/api/v1/reference#problem-"


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, kind: str = "", headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extra = extra


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int, detail: str, *, kind: str = "", headers: dict | None = None, **extra
) -> Response:
    body = {
        "type": f"{TYPE_BASE}{kind}" if kind else "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "error": kind or _title(status).lower(),
        "message": detail,
        **extra,  # may replace ``error`` with the short code older clients know ("too large")
    }
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_problem(exc: Problem) -> Response:
    return problem_response(exc.status, exc.detail, kind=exc.kind, headers=exc.headers, **exc.extra)


def from_http_exception(
    exc: HTTPException, detail: str | None = None, *, error: str | None = None
) -> Response:
    """A werkzeug error (404, 405, 413, 429 …) as a problem; a 405 names the allowed methods."""
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    for name, value in exc.get_headers() or []:
        if name.lower() in ("retry-after", "www-authenticate"):
            headers[name] = value
    status = exc.code or 500
    extra = {"error": error} if error else {}
    return problem_response(status, detail or exc.description or _title(status), headers=headers, **extra)
