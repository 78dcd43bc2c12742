"""Which site a browser request comes from, and whether that site may use the box.

Browsers write ``Origin`` on cross-site fetches and form POSTs, and the
``Referer`` (cut to the origin across sites, by default) when a page loads
an iframe; scripts cannot forge either. Our own origin (``BASE_URL``, or the
host the request reached) is always allowed: the archive's issue pages and
the editor's preview show the box too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from newsletter.config import is_origin


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a URL, or None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return origin if is_origin(origin) else None


def path_of(url: str | None) -> str:
    """The path of a URL (never its query: it may carry a reader's data)."""
    return urlsplit(url or "").path[:200]


def own_origins(settings) -> set[str]:
    return {o for o in (origin_of(settings.base_url), origin_of(request.host_url)) if o}


def caller() -> str | None:
    """The origin of the page that sent this request: ``Origin``, else the
    ``Referer``'s. ``"null"`` (sandboxed frames, file pages) stays ``"null"``."""
    origin = request.headers.get("Origin")
    if origin:
        return origin.strip()
    return origin_of(request.headers.get("Referer"))


def box_allowed(settings, origin: str | None) -> bool:
    """May a page of ``origin`` show the box (NEWSLETTER_EMBED_ORIGINS, or ours)?"""
    return bool(origin) and (origin in settings.allowed_embed_origins or origin in own_origins(settings))


def api_allowed(settings, origin: str | None) -> bool:
    """May a page of ``origin`` call the public subscribe API from a browser?"""
    return box_allowed(settings, origin) or (bool(origin) and origin in settings.cors_origins)


def refusal(origin: str | None) -> str:
    """What a refused site is told (its own operator reads it)."""
    return (
        f"The sign-up box is not enabled for {origin or 'this site'}. "
        "The newsletter's operator can add this origin to NEWSLETTER_EMBED_ORIGINS."
    )
