"""Turning untrusted input into something safe to store and to mail.

Synopses and the editor's intro are Markdown rendered by markdown-it-py with
raw HTML *disabled* (a ``<script>`` in the source becomes visible text), then
cleaned by nh3 with a short allow-list, so whatever reaches an email or the
web archive is inert. URLs are accepted only as absolute http(s) URLs:
``javascript:``, ``data:``, ``vbscript:`` and friends are refused with a
message that names the problem.

Feeds are not Markdown: what a feed marked as HTML is cleaned by the same
allow-list (``clean_html``), and its plain text stays plain text
(``text_to_html``; ``escape_markdown`` keeps it literal if it is ever
rendered as Markdown), so link syntax typed in a description never becomes
a live link.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {"p", "a", "em", "strong", "code", "pre", "ul", "ol", "li", "blockquote", "br", "del", "s"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Per-recipient placeholders live in frozen renders (see rendering.placeholders);
# user text must never be able to spell one.
_PLACEHOLDER_PREFIX = "%%GTS_"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidUrl(ValueError):
    """A URL that is not an absolute http(s) URL."""


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        "strikethrough"
    )


def neutralise(value: str) -> str:
    """Remove control characters and anything that looks like a render placeholder."""
    value = _CONTROL.sub("", value or "")
    return value.replace(_PLACEHOLDER_PREFIX, "%% GTS_")


def clean_text(value, *, max_length: int | None = None, field: str = "value") -> str:
    """A single line of plain text: no control characters, no CR/LF, trimmed."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text")
    value = neutralise(unicodedata.normalize("NFC", value))
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"{field} is longer than {max_length} characters")
    return value


def markdown_to_html(source: str) -> str:
    """Markdown → sanitised HTML fragment (raw HTML in the source is shown as text)."""
    if not source:
        return ""
    rendered = _markdown().render(neutralise(source))
    cleaned = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()
    # Markdown decodes character references ("&#37;&#37;GTS_…" → "%%GTS_…"),
    # so the source's neutralising is not enough: neutralise what it became.
    return neutralise(cleaned)


def clean_html(fragment: str) -> str:
    """HTML from a source that marked it as HTML (a feed's ``type="html"``)
    → the same short allow-list as rendered Markdown; links only as absolute
    http(s) or mailto URLs (a relative one is dropped: an email has no base)."""
    if not fragment:
        return ""
    cleaned = nh3.clean(
        neutralise(fragment),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()
    return neutralise(cleaned)


def html_text(fragment: str) -> str:
    """The text of an HTML fragment on one line: tags dropped, entities decoded."""
    return " ".join(_html.unescape(nh3.clean(fragment or "", tags=set())).split())


def text_to_html(text: str) -> str:
    """Plain text as an HTML paragraph, every character shown as typed."""
    text = neutralise(" ".join((text or "").split()))
    return f"<p>{_html.escape(text, quote=False)}</p>" if text else ""


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(text: str) -> str:
    """Plain text as Markdown that renders to exactly that text: every ASCII
    punctuation character backslash-escaped (CommonMark 2.4)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text or "")


MAX_URL_LENGTH = 2000  # the URL columns' length (models: Article.url, image_url, ...)


def check_url(value, *, field: str = "url", required: bool = True) -> str | None:
    """Return a normalised absolute http(s) URL or raise InvalidUrl.

    Whitespace and control characters are refused rather than stripped
    (``java\\tscript:`` tricks), the scheme and host are lower-cased, and the
    result never contains a quote or angle bracket unescaped.
    """
    if value is None or value == "":
        if required:
            raise InvalidUrl(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise InvalidUrl(f"{field} must be text")
    raw = value.strip()
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidUrl(f"{field} is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(raw) or any(c.isspace() for c in raw):
        raise InvalidUrl(f"{field} must not contain spaces or control characters")
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise InvalidUrl(f"{field} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        shown = f"{scheme}:" if scheme else "a relative URL"
        raise InvalidUrl(f"{field} must be an http(s) URL, not {shown}")
    if not parts.hostname:
        raise InvalidUrl(f"{field} has no host")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidUrl(f"{field} must not contain credentials")
    safe = urlunsplit((scheme, netloc.lower(), parts.path, parts.query, parts.fragment))
    # Quotes and angle brackets are legal nowhere in a URL: percent-encode them.
    safe = safe.replace('"', "%22").replace("'", "%27").replace("<", "%3C").replace(">", "%3E")
    if len(safe) > MAX_URL_LENGTH:  # the stored form, not the input, must fit the column
        raise InvalidUrl(f"{field} is longer than {MAX_URL_LENGTH} characters once quotes are encoded")
    return safe


def is_https(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme == "https"


_LINK = re.compile(r'<a\s[^>]*href="([^"]*)"[^>]*>(.*?)</a>', re.S)
_BLOCK_END = re.compile(r"</(p|blockquote|pre|ul|ol)>|<br\s*/?>")


def html_to_text(fragment: str) -> str:
    """Sanitised HTML (as made by ``markdown_to_html``) → readable plain text:
    emphasis dropped, links written as "text (url)", paragraphs kept apart."""

    def link(match: re.Match) -> str:
        url, label = _html.unescape(match.group(1)), match.group(2)
        plain = _html.unescape(nh3.clean(label, tags=set()))
        return plain if plain == url else f"{label} ({match.group(1)})"

    text = _LINK.sub(link, fragment or "")
    text = text.replace("<li>", "- ")
    text = _BLOCK_END.sub("\n\n", text)
    text = _html.unescape(nh3.clean(text, tags=set()))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
