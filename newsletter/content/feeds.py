"""RSS and Atom feeds in: fetched politely and safely, parsed by feedparser, upserted.

Fetching (``content.fetch``) uses requests with timeouts, a size cap,
public addresses only, same-host redirects only, and conditional GET (the
ETag and Last-Modified of the last answer are kept in FeedState), so a
feed polled every hour costs its server a 304 most of the time. Entry
categories become tags (not sections: feed categories are noisy; an editor
promotes the useful ones). Summaries are HTML in feeds: they are reduced to
plain text, which is valid Markdown, and then go through the same
sanitising path as everything else. A feed's articles are matched by
external id and URL among that feed's own articles only.
"""

from __future__ import annotations

import html
import logging
from calendar import timegm
from datetime import UTC, datetime

import feedparser
import nh3

from newsletter import clock
from newsletter.config import Settings
from newsletter.content.fetch import FeedError, fetch
from newsletter.content.service import UpsertReport, source_key, upsert_articles
from newsletter.db import session_scope
from newsletter.models import FeedState

__all__ = ["FeedError", "poll_feed", "poll_configured_feeds", "entries_to_items"]

log = logging.getLogger("newsletter.feeds")
SYNOPSIS_CHARS = 600


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


def poll_feed(
    settings: Settings, url: str, *, tags: tuple[str, ...] = (), allow_file: bool = False
) -> UpsertReport:
    """Fetch one feed (conditional GET) and upsert its entries; raises FeedError.
    ``allow_file``: read a ``file://`` URL (the CLI's --allow-file only)."""
    with session_scope() as session:
        state = session.get(FeedState, url)
        known = FeedState(url=url, etag=state.etag, last_modified=state.last_modified) if state else None
    try:
        fetched = fetch(
            url,
            settings,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
            allow_file=allow_file,
        )
        if fetched.body is None:
            report = UpsertReport(not_modified=True)
            etag, last_modified = (known.etag, known.last_modified) if known else (None, None)
        else:
            parsed = feedparser.parse(fetched.body)
            if not parsed.entries and (parsed.bozo or not parsed.get("version")):
                reason = parsed.get("bozo_exception") or "no RSS or Atom document found"
                raise FeedError(f"{url} is not an RSS or Atom feed ({reason})")
            report = upsert_articles(
                entries_to_items(parsed, tags),
                "feed",
                scope=source_key("feed", url),
                new_tags_are_sections=False,
            )
            etag, last_modified = fetched.headers.get("etag"), fetched.headers.get("last-modified")
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
