"""RSS and Atom feeds in: fetched politely, parsed by feedparser, upserted.

Fetching uses requests with timeouts, a size cap and conditional GET (the
ETag and Last-Modified of the last answer are kept in FeedState), so a
feed polled every hour costs its server a 304 most of the time. Entry
categories become tags (not sections: feed categories are noisy; an editor
promotes the useful ones). Summaries are HTML in feeds: they are reduced to
plain text, which is valid Markdown, and then go through the same
sanitising path as everything else.
"""

from __future__ import annotations

import html
import logging
from calendar import timegm
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import feedparser
import nh3
import requests

from newsletter import clock
from newsletter.config import Settings
from newsletter.content.service import UpsertReport, upsert_articles
from newsletter.db import session_scope
from newsletter.models import FeedState

log = logging.getLogger("newsletter.feeds")
TIMEOUT = (5, 20)  # connect, read (seconds)
MAX_BYTES = 5 * 1024 * 1024
SYNOPSIS_CHARS = 600
USER_AGENT = "GET-THE-SIGNAL/1 (+https://github.com/; newsletter feed reader)"


class FeedError(RuntimeError):
    """The feed could not be fetched or parsed; the message says why."""


def _fetch(url: str, state: FeedState | None) -> tuple[bytes | None, str | None, str | None]:
    """(body or None on 304, etag, last_modified)."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = Path(url2pathname(urlsplit(url).path))
        try:
            return path.read_bytes()[: MAX_BYTES + 1], None, None
        except OSError as exc:
            raise FeedError(f"cannot read {path}: {exc.strerror}") from None
    if scheme not in {"http", "https"}:
        raise FeedError(f"feed URL must be http(s), not {scheme or 'relative'}")
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if state and state.etag:
        headers["If-None-Match"] = state.etag
    if state and state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        with requests.get(
            url, headers=headers, timeout=TIMEOUT, stream=True, allow_redirects=True
        ) as response:
            if response.status_code == 304:
                return None, state.etag if state else None, state.last_modified if state else None
            if response.status_code >= 400:
                raise FeedError(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(65536):
                body.extend(chunk)
                if len(body) > MAX_BYTES:
                    raise FeedError(f"{url} is larger than {MAX_BYTES // (1024 * 1024)} MB")
            return bytes(body), response.headers.get("ETag"), response.headers.get("Last-Modified")
    except requests.RequestException as exc:
        raise FeedError(f"cannot fetch {url}: {exc.__class__.__name__}") from None


def _text(summary: str) -> str:
    """Feed HTML → plain text (tags dropped, entities decoded), shortened at a word."""
    plain = html.unescape(nh3.clean(summary or "", tags=set()))
    plain = " ".join(plain.split())
    if len(plain) > SYNOPSIS_CHARS:
        plain = plain[:SYNOPSIS_CHARS].rsplit(" ", 1)[0] + "…"
    return plain


def _when(entry) -> str | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(timegm(parsed), UTC).isoformat()


def entries_to_items(parsed, extra_tags: tuple[str, ...] = ()) -> list[dict]:
    items = []
    for entry in parsed.entries:
        item = {
            "external_id": (entry.get("id") or entry.get("link") or "")[:300] or None,
            "url": entry.get("link"),
            "title": entry.get("title") or "",
            "synopsis": _text(entry.get("summary", "")),
            "author": (entry.get("author") or "")[:200],
            "tags": [t.get("term") for t in entry.get("tags", []) if t.get("term")][:15] + list(extra_tags),
        }
        when = _when(entry)
        if when:
            item["published_at"] = when
        items.append(item)
    return items


def poll_feed(settings: Settings, url: str, *, tags: tuple[str, ...] = ()) -> UpsertReport:
    """Fetch one feed (conditional GET) and upsert its entries; raises FeedError."""
    with session_scope() as session:
        state = session.get(FeedState, url)
        known = FeedState(url=url, etag=state.etag, last_modified=state.last_modified) if state else None
    try:
        body, etag, last_modified = _fetch(url, known)
        if body is None:
            report = UpsertReport(not_modified=True)
        else:
            parsed = feedparser.parse(body)
            if not parsed.entries and (parsed.bozo or not parsed.get("version")):
                reason = parsed.get("bozo_exception") or "no RSS or Atom document found"
                raise FeedError(f"{url} is not an RSS or Atom feed ({reason})")
            report = upsert_articles(entries_to_items(parsed, tags), "feed", new_tags_are_sections=False)
        _remember(url, etag=etag, last_modified=last_modified, error="")
        return report
    except FeedError as exc:
        _remember(
            url,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
            error=str(exc),
        )
        raise


def _remember(url: str, *, etag: str | None, last_modified: str | None, error: str) -> None:
    with session_scope() as session:
        state = session.get(FeedState, url) or FeedState(url=url)
        state.etag = (etag or None) and etag[:500]
        state.last_modified = (last_modified or None) and last_modified[:100]
        state.last_polled_at = clock.now()
        state.last_error = error[:1000]
        session.add(state)


def poll_configured_feeds(settings: Settings) -> dict[str, UpsertReport | str]:
    """The scheduler job: poll every feed in NEWSLETTER_FEEDS; one failing feed
    never stops the others. Returns {url: report or error message}."""
    results: dict[str, UpsertReport | str] = {}
    for url in settings.feeds:
        try:
            results[url] = poll_feed(settings, url)
        except FeedError as exc:
            log.warning("feed %s: %s", url, exc)
            results[url] = str(exc)
    return results
