"""What the web faces share beyond Flask's own idioms: email HTML served
under its own Content-Security-Policy, numbers from URLs that the database
can hold, and public pages a CDN can keep (``public_cache``).

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

import functools
import hashlib
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import Response, abort, current_app, request
from werkzeug.http import is_resource_modified
from werkzeug.routing import IntegerConverter

from newsletter import clock
from newsletter.db import MAX_INTEGER, parse_integer
from newsletter.paths import PACKAGE, TEMPLATES

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


PUBLIC_PAGES = "signal.public_pages"
PAGES_KEPT = 64


@dataclass
class _Page:
    first_seen: datetime
    body: bytes | None = None


class PublicPages:
    """This process's rendered public pages, by ETag: the newest ``size`` only.

    A page is rendered once per validator (``public_cache``), not once per
    request: a CDN's cache miss or a crowd arriving from a link costs a
    dictionary look-up. The validator names everything the page is made
    from, so an entry is never stale; a changed page has a new ETag and old
    entries fall out as new ones come in. A page rendered while its data
    changes holds data at least as new as its key (the key is read first),
    so the worst case is a newer page under the older ETag, which the next
    revalidation replaces."""

    def __init__(self, size: int = PAGES_KEPT):
        self.size = size
        self.started = clock.now().replace(microsecond=0)  # made with the app: its code and settings
        self._pages: OrderedDict[str, _Page] = OrderedDict()
        self._lock = threading.Lock()

    def first_seen(self, etag: str) -> datetime:
        """When this process first served ``etag`` (now, if it never has)."""
        with self._lock:
            page = self._entry(etag)
            self._pages.move_to_end(etag)
            return page.first_seen

    def body(self, etag: str, render: Callable[[], str]) -> bytes:
        """The page for ``etag``, rendered by ``render()`` if it is not kept."""
        with self._lock:
            page = self._pages.get(etag)
            if page is not None and page.body is not None:
                return page.body
        body = render().encode()  # outside the lock: other pages are served meanwhile
        with self._lock:
            self._entry(etag).body = body
        return body

    def _entry(self, etag: str) -> _Page:
        """The entry for ``etag``, made now if there is none (the oldest one
        then falls out). Called with the lock held."""
        page = self._pages.get(etag)
        if page is None:
            page = self._pages[etag] = _Page(clock.now().replace(microsecond=0))
            if len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return page


@functools.cache
def code_digest() -> str:
    """A digest of the code and templates this process serves: a deploy that
    changes how a page looks changes its ETag. Read once per process."""
    digest = hashlib.sha256()
    for root, pattern in ((PACKAGE, "*.py"), (TEMPLATES, "*")):
        for path in sorted(root.rglob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def public_cache(
    key: tuple,
    render: Callable[[], str],
    *,
    max_age: int,
    stale: int,
    last_modified: datetime | None = None,
    mimetype: str = "text/html",
) -> Response:
    """A public page (or feed: ``mimetype``) a CDN and browsers can keep,
    answered without rendering when it can be.

    ``key`` names what the page is made from (rows' ids and change times,
    the settings and the form token it shows), read cheaply before any
    rendering; with the code's digest it is the ETag. A conditional request
    (``If-None-Match``, ``If-Modified-Since``) that still holds the page is
    a 304 and ``render`` is never called; any other request gets the body
    this process rendered for that ETag, rendering it only the first time
    (``PublicPages``). ``last_modified`` is when the data last changed; a
    page whose data keeps no time (the front page's topics) passes None and
    gets the moment this process first served its ETag — never earlier than
    the change, so a client that only sends ``If-Modified-Since`` is not
    told a changed page is unchanged. Either is at least the moment this
    process started serving pages: its code and settings (the public URL, the
    sections) are part of the ETag, and a restart may have changed them.

    ``stale-while-revalidate`` lets a cache serve the page while it fetches
    a fresh one. A visitor who carries a session cookie (an editor, a reader
    shown a one-time notice) may be shown something meant only for them, so
    their page is rendered for them, its ETag hashed from the body, and
    marked ``private, no-cache``: revalidated, never shared or kept here."""
    if current_app.config.get("SESSION_COOKIE_NAME", "session") in request.cookies:
        response = Response(render(), mimetype=mimetype)
        response.last_modified = last_modified
        response.add_etag()
        response.headers["Cache-Control"] = "private, no-cache"
        return response.make_conditional(request)
    etag = hashlib.sha256(repr((code_digest(), key)).encode()).hexdigest()[:32]
    pages: PublicPages = current_app.extensions[PUBLIC_PAGES]  # the app factory's
    changed = last_modified.replace(microsecond=0) if last_modified else pages.first_seen(etag)
    modified = max(changed, pages.started)
    response = Response(mimetype=mimetype)
    response.set_etag(etag)
    response.last_modified = modified
    response.headers["Cache-Control"] = f"public, max-age={max_age}, stale-while-revalidate={stale}"
    if is_resource_modified(request.environ, etag=etag, last_modified=modified):
        response.set_data(pages.body(etag, render))
    return response.make_conditional(request)  # the same test: a 304, or the 200 with its body


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
