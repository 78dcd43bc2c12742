"""Lint for issue HTML, shown with every preview.

What it catches is what hurts a newsletter in real inboxes: Gmail clips
messages whose HTML passes 102 KB (the footer with the unsubscribe link
disappears behind "View entire message"), images without alt text (most
clients block images by default), links that are not http(s), and anything
that makes the reader's client fetch from elsewhere (scripts, stylesheets,
fonts, remote images, tracking pixels).

``content_findings`` is the other half, on the issue's content rather than
its HTML: any field that spells a per-recipient marker in any encoding
(``content.markers``) is an error, and an issue with such an error cannot be
approved, scheduled or auto-sent (``issues.service``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from newsletter.content.markers import PREFIX, marker_like

GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 90 * 1024
_CSS_URL = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?\s*([^'")\s]+)""", re.I)
_LOADS = {"script": "src", "iframe": "src", "frame": "src", "embed": "src", "object": "data", "video": "src",
          "audio": "src", "source": "src", "track": "src", "input": "src"}  # fmt: skip


@dataclass(frozen=True)
class LintFinding:
    level: str  # error | warning | info
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message} [{self.code}]"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))
        self._in_style = tag == "style"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def _is_local(url: str, base_host: str | None) -> bool:
    host = urlsplit(url).hostname
    return host is None or (base_host is not None and host == base_host)


def lint_html(html: str, base_url: str | None = None) -> list[LintFinding]:
    """Findings for one rendered HTML document, most serious first.
    ``base_url`` (Settings.base_url) is the one host images may come from unflagged."""
    findings: list[LintFinding] = []
    size = len(html.encode("utf-8"))
    kb = f"{size / 1024:.1f} KB"
    if size > GMAIL_CLIP_BYTES:
        findings.append(
            LintFinding(
                "error",
                "gmail-clip",
                f"HTML is {kb}: Gmail clips messages over 102 KB (footer and unsubscribe link hidden)",
            )
        )
    elif size > WARN_BYTES:
        findings.append(
            LintFinding("warning", "size", f"HTML is {kb}, close to Gmail's 102 KB clipping limit")
        )
    else:
        findings.append(LintFinding("info", "size", f"HTML is {kb} of Gmail's 102 KB limit"))

    base_host = urlsplit(base_url).hostname if base_url else None
    parser = _Collector()
    parser.feed(html)
    parser.close()
    seen: set[tuple[str, str]] = set()

    def add(level: str, code: str, message: str) -> None:
        if (code, message) not in seen:
            seen.add((code, message))
            findings.append(LintFinding(level, code, message))

    for tag, attrs in parser.tags:
        if tag == "img":
            src = attrs.get("src", "")
            if not attrs.get("alt", "").strip():
                add("warning", "img-alt", f"image without alt text: {src[:120]}")
            if attrs.get("width") in {"0", "1"} and attrs.get("height") in {"0", "1"}:
                add("error", "tracking-pixel", f"1×1 image looks like a tracking pixel: {src[:120]}")
            if urlsplit(src).scheme not in {"http", "https"} and not src.startswith("cid:"):
                add("error", "img-src", f"image source is not an http(s) URL: {src[:120]}")
            elif not _is_local(src, base_host):
                add(
                    "warning",
                    "external-resource",
                    f"remote image loads from {urlsplit(src).hostname}: {src[:120]}",
                )
        elif tag == "a":
            href = attrs.get("href", "").strip()
            if href.startswith((PREFIX, "#")):  # a frozen render's own marker, or an anchor
                continue
            if urlsplit(href).scheme.lower() not in {"http", "https", "mailto"}:
                add("error", "link-scheme", f"link is not an http(s) URL: {href[:120] or '(empty)'}")
        elif tag == "link" and attrs.get("href"):
            add(
                "error", "external-resource", f"<link rel={attrs.get('rel', '')}> loads {attrs['href'][:120]}"
            )
        elif tag in _LOADS and attrs.get(_LOADS[tag]):
            add("error", "external-resource", f"<{tag}> loads {attrs[_LOADS[tag]][:120]}")
        elif tag == "script":
            add(
                "error", "script", "inline <script> (email clients strip it; it has no place in a newsletter)"
            )
        if "background" in attrs and attrs["background"]:
            add("warning", "external-resource", f"background image {attrs['background'][:120]}")
        for url in _CSS_URL.findall(attrs.get("style", "")):
            if not url.startswith("data:"):
                add("error", "external-resource", f"inline style loads {url[:120]}")
    for css in parser.styles:
        for url in _CSS_URL.findall(css):
            if not url.startswith("data:"):
                add("error", "external-resource", f"stylesheet loads {url[:120]}")
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.level])


MARKER_CODE = "marker"


def content_findings(fields: Iterable[tuple[str, str | None]]) -> list[LintFinding]:
    """Errors for content fields that read as a per-recipient marker.
    ``fields``: (where, value) pairs, e.g. ("article 12 image_url", "https://…")."""
    return [
        LintFinding(
            "error",
            MARKER_CODE,
            f"{where} holds text that reads as a personal-link marker ({PREFIX}…): "
            "remove it; an issue holding it cannot be approved",
        )
        for where, value in fields
        if marker_like(value)
    ]
