"""Article links pointed at the counting redirect (``NEWSLETTER_CLICK_COUNTS=aggregate``).

When enabled, article links in the frozen issue HTML point at
``{base_url}/c/<issue_id>/<signature>?u=<url>``: the signature covers the issue
id and the exact destination, so the redirect goes nowhere we did not write
ourselves (no open redirect; an altered URL is refused by
``feedback.clicks.verify_click``). Links are rewritten once per variant, when
it is frozen, before per-recipient personalisation. Off by default.
"""

from __future__ import annotations

import html as html_lib
import re
from urllib.parse import quote

from newsletter.config import Settings
from newsletter.tokens import make_token

MAX_URL = 2000
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def enabled(settings: Settings) -> bool:
    return settings.click_counts == "aggregate"


def signed_value(issue_id: int, url: str) -> str:
    """What a click signature covers: the issue and the exact destination."""
    return f"{issue_id}|{url}"


def click_url(settings: Settings, issue_id: int, url: str) -> str:
    """The counting redirect for ``url`` in issue ``issue_id``."""
    signature = make_token(settings.secret_key, "click", signed_value(issue_id, url)).rsplit(".", 1)[1]
    return f"{settings.base_url}/c/{issue_id}/{signature}?u={quote(url, safe='')}"


def _countable(settings: Settings, url: str) -> bool:
    """Article links only: no personal links (placeholders, unsubscribe,
    preferences, confirm) and nothing that is not plain http(s)."""
    if not url.lower().startswith(("http://", "https://")) or len(url) > MAX_URL:
        return False
    if any(mark in url for mark in ("{", "}", "%7B", "%7b", "[[", "*|", "%%")):
        return False
    base = settings.base_url
    if url.startswith(base) and any(
        url.startswith(f"{base}/{p}") for p in ("unsubscribe", "preferences", "confirm", "c/")
    ):
        return False
    return True


def rewrite_links(html: str, settings: Settings, issue_id: int) -> str:
    """Point the article links of frozen issue HTML at the counting redirect
    (no-op unless click counts are enabled). For the rendering step, once per
    variant, before per-recipient personalisation."""
    if not enabled(settings):
        return html

    def swap(match: re.Match) -> str:
        url = html_lib.unescape(match.group(3)).strip()
        if not _countable(settings, url):
            return match.group(0)
        new = html_lib.escape(click_url(settings, issue_id, url), quote=True)
        return f"{match.group(1)}{match.group(2)}{new}{match.group(2)}"

    return _HREF.sub(swap, html)


def rewrite_text_links(text: str, settings: Settings, issue_id: int) -> str:
    """The same for the plain-text part."""
    if not enabled(settings):
        return text
    return _TEXT_URL.sub(
        lambda m: (
            click_url(settings, issue_id, m.group(0)) if _countable(settings, m.group(0)) else m.group(0)
        ),
        text,
    )


def apply_click_counts(render, settings: Settings):
    """Rewrite one frozen ``IssueRender`` (html and text) in place when click
    counts are on; called by the rendering step when it freezes a variant."""
    if enabled(settings) and render.issue_id is not None:
        render.html = rewrite_links(render.html, settings, render.issue_id)
        render.text = rewrite_text_links(render.text, settings, render.issue_id)
    return render
