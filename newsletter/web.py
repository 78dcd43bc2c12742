"""What the web faces share beyond Flask's own idioms: email HTML served
under its own Content-Security-Policy, and numbers from URLs that the
database can hold.

Numbers in URLs (issue numbers, ids, page numbers, cursors) are someone
else's input: the ``int`` converter (``DatabaseInteger``, installed by the
app factory for every route) and ``int_arg`` accept ASCII digits up to the
database's INTEGER range only, so an absurd number is a 404 or a 400, never
an overflow in the database.

Email HTML needs inline styles, and nothing in it may run script, submit a
form or load from anywhere but https and data: images. It is shown in
sandboxed iframes (the editor's preview, both outbox pages): same-origin so
the editor can fit the frame to its content, popups for links, and a click
may navigate the top window (the demo's outbox opens a confirmation link).
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime

from flask import Response, abort, current_app, request
from werkzeug.routing import IntegerConverter

from newsletter.db import MAX_INTEGER, parse_integer

MAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "frame-ancestors 'self'; form-action 'none'"
)
_HEAD = re.compile(r"(<head[^>]*>)", re.I)
_BLANK = re.compile(r"""target=(["'])_blank\1""", re.I)


def mail_html_response(html: str, *, links_in_top_window: bool = False) -> Response:
    """``html`` for a sandboxed iframe; with ``links_in_top_window`` its links
    open in the page around the frame instead of a new tab."""
    if links_in_top_window:
        html = _HEAD.sub(r'\1<base target="_top">', html, count=1)
        html = _BLANK.sub('target="_top"', html)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def public_cache(
    response: Response, *, max_age: int, stale: int, last_modified: datetime | None = None
) -> Response:
    """Make a public page cacheable by a CDN and by browsers, and answer a
    conditional request (``If-None-Match``, ``If-Modified-Since``) with 304.

    The ETag is a hash of the body, so it changes exactly when the page does;
    ``stale-while-revalidate`` lets a cache serve the page while it fetches a
    fresh one. A visitor who carries a session cookie (an editor, a reader
    shown a one-time notice) may be shown something meant only for them, so
    their copy is ``private, no-cache``: revalidated, never shared."""
    if last_modified is not None:
        response.last_modified = last_modified
    response.add_etag()
    if current_app.config.get("SESSION_COOKIE_NAME", "session") in request.cookies:
        response.headers["Cache-Control"] = "private, no-cache"
    else:
        response.headers["Cache-Control"] = f"public, max-age={max_age}, stale-while-revalidate={stale}"
    return response.make_conditional(request)


class DatabaseInteger(IntegerConverter):
    """``<int:…>`` in every route: 0 to MAX_INTEGER, ASCII digits only (else 404)."""

    regex = r"[0-9]{1,10}"

    def __init__(self, map, **kwargs):
        kwargs.setdefault("max", MAX_INTEGER)
        super().__init__(map, **kwargs)


def int_arg(name: str, default: int | None = None) -> int | None:
    """A whole-number query parameter (a cursor, a page): ``default`` when
    absent or empty, 400 when it is not a number the database can hold."""
    raw = request.args.get(name, "")
    if raw == "":
        return default
    value = parse_integer(raw)
    if value is None:
        abort(400, description=f"{name} must be a whole number from 0 to {MAX_INTEGER}.")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text_arg(name: str, limit: int) -> str:
    """A free-text query parameter (a search, a filter): stripped, at most
    ``limit`` characters, control characters removed — PostgreSQL refuses a
    NUL in any text it is asked to compare, and no stored text holds one."""
    return _CONTROL.sub("", request.args.get(name, "")).strip()[:limit]


def spooled_download(write, *, mimetype: str, filename: str) -> Response:
    """Stream what ``write(file)`` writes: into a spooled temp file (disk past
    8 MB), then out in chunks, so a million rows never sit in memory. The
    editor's and the API's subscriber exports both use it."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+", encoding="utf-8", newline="")
    try:
        write(spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks():
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    return Response(
        chunks(), mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
