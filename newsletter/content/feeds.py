"""RSS and Atom feeds in: fetched politely and safely, parsed by feedparser, upserted.

Fetching (``content.fetch``) uses requests with timeouts, a size cap,
public addresses only, same-host redirects only, and conditional GET (the
ETag and Last-Modified of the last answer are kept in FeedState), so a
feed polled every hour costs its server a 304 most of the time.

Parsing takes the feed as the web writes it:

- feedparser gets the HTTP response headers, so the charset of the
  ``Content-Type`` decides how the bytes are read (a KOI8-R or Shift_JIS
  feed without an XML declaration is not mojibake) and relative links are
  resolved against the feed's final URL;
- a title the feed marked as HTML or XHTML becomes plain text (``Q&amp;A``
  is "Q&A"; ``<em>`` is not shown); an item without a title (RSS allows it:
  Mastodon and micro.blog write them) gets one from its text;
- authors are published by name only, never by email address;
- a summary marked as HTML is cleaned by the allow-list; plain text stays
  plain text (link syntax typed in it is shown as typed, never a link);
- entry categories become tags (not sections: feed categories are noisy;
  an editor promotes the useful ones).

A feed's articles are matched by external id and URL among that feed's own
articles only. How the URL is fetched (public addresses only, same-host
redirects) is ``content.fetch``.
"""

from __future__ import annotations

import logging
import re
import xml.sax
from calendar import timegm
from datetime import UTC, datetime
from urllib.parse import urljoin

import feedparser

from newsletter import clock
from newsletter.config import Settings
from newsletter.content.fetch import FeedError, fetch
from newsletter.content.sanitise import clean_html, escape_markdown, html_text, text_to_html
from newsletter.content.service import FEED_FIELDS, UpsertReport, source_key, upsert_articles
from newsletter.db import session_scope
from newsletter.models import FeedState

__all__ = ["FeedError", "poll_feed", "poll_configured_feeds", "entries_to_items"]

log = logging.getLogger("newsletter.feeds")
SYNOPSIS_CHARS = 600
TITLE_CHARS = 90  # a title made from an untitled item's text
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
VERSIONS = {"rss": "RSS", "atom": "Atom", "cdf": "CDF"}


def parse_feed(body: bytes, *, url: str, headers: dict[str, str] | None = None):
    """feedparser's reading of ``body`` as served: the response headers
    decide the charset (RFC 3023, as feedparser applies it) and the final
    ``url`` is the base for relative links (unless the server names another
    with Content-Location)."""
    served = {name.lower(): value for name, value in (headers or {}).items()}
    served["content-location"] = urljoin(url, served.get("content-location", ""))
    return feedparser.parse(body, response_headers=served)


def _text_of(value: str, kind: str) -> str:
    """A feed text construct as plain text on one line."""
    if kind in HTML_TYPES:
        return html_text(value)
    return " ".join((value or "").split())


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:—-") + "…"


def _summary(entry) -> tuple[str, str]:
    """(value, type) of the entry's summary, or of its content when it has none."""
    if entry.get("summary"):
        return entry["summary"], entry.get("summary_detail", {}).get("type", "text/html")
    for content in entry.get("content", []):
        if content.get("value"):
            return content["value"], content.get("type", "text/html")
    return "", "text/plain"


def _synopsis(entry) -> tuple[str, str, str]:
    """(plain text, Markdown source, HTML) of the summary. HTML the feed
    marked as such is cleaned by the allow-list; plain text stays plain
    text. A long summary is shortened as plain text (HTML cannot be cut
    safely in the middle)."""
    value, kind = _summary(entry)
    text = _text_of(value, kind)
    short = _shorten(text, SYNOPSIS_CHARS)
    if kind in HTML_TYPES and short == text:
        html = clean_html(value)
    else:
        html = text_to_html(short)
    return short, escape_markdown(short), html


def _title(entry, text: str) -> str:
    """The title as plain text; for an untitled item, its first words."""
    title = _text_of(entry.get("title", ""), entry.get("title_detail", {}).get("type", "text/plain"))
    if title:
        return title[:500]
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    if first:
        return _shorten(first, TITLE_CHARS)
    when = _when(entry)
    return f"Post of {when[:10]}" if when else "Untitled post"


_EMAIL = re.compile(r"\(?\s*<?[^\s()<>@]+@[^\s()<>]+>?\s*\)?")


def _author(entry) -> str:
    """Authors by name only: feeds often carry an email address
    ("jane@example.org (Jane Doe)"), which is never published."""
    names = [a.get("name", "") for a in entry.get("authors", []) if isinstance(a, dict)]
    if not any(names):
        names = [entry.get("author_detail", {}).get("name", "")]
    if not any(names):
        names = [_EMAIL.sub(" ", entry.get("author") or "")]
    return ", ".join(" ".join(n.split()) for n in names if n and n.strip())[:200]


def _when(entry) -> str | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(timegm(parsed), UTC).isoformat()


def entries_to_items(parsed, extra_tags: tuple[str, ...] = ()) -> list[dict]:
    items = []
    for entry in parsed.entries:
        text, source, html = _synopsis(entry)
        item = {
            "external_id": (entry.get("id") or entry.get("link") or "")[:300] or None,
            "url": entry.get("link"),
            "title": _title(entry, text),
            "synopsis": source,
            "synopsis_html": html,
            "author": _author(entry),
            "tags": [t.get("term") for t in entry.get("tags", []) if t.get("term")][:15] + list(extra_tags),
        }
        when = _when(entry)
        if when:
            item["published_at"] = when
        items.append(item)
    return items


def _version(parsed) -> str:
    """feedparser's version code as people write it: "rss20" → "RSS 2.0"."""
    code = parsed.get("version") or ""
    kind = next((name for prefix, name in VERSIONS.items() if code.startswith(prefix)), code)
    digits = code[len(kind) :] if code.lower().startswith(kind.lower()) else ""
    return f"{kind} {digits[0]}.{digits[1:]}" if len(digits) >= 2 else kind


def _check(parsed, url: str) -> str:
    """Raise FeedError for a document that is not a feed or could not be
    read; return a note for a feed that simply has no entries."""
    if parsed.entries:
        return ""
    problem = parsed.get("bozo_exception")
    if not parsed.get("version"):
        raise FeedError(f"{url} is not an RSS or Atom feed ({problem or 'no RSS or Atom document found'})")
    if isinstance(problem, xml.sax.SAXException):
        raise FeedError(
            f"{url}: the {_version(parsed)} feed is not well-formed ({problem}); no entries could be read"
        )
    note = f"the {_version(parsed)} feed has no entries"
    return f"{note} (the parser warned: {problem})" if problem else note


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
            parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
            note = _check(parsed, url)
            report = upsert_articles(
                entries_to_items(parsed, tags),
                "feed",
                scope=source_key("feed", url),
                new_tags_are_sections=False,
                fields=FEED_FIELDS,
            )
            report.note = note
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
