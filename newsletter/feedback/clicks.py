"""Aggregate click counts: the counting redirect's check and its counter.

A click adds one to the ``ClickCount`` of that link in that issue — never
who clicked: the link is the same for every reader (``rendering.clicks``
wrote it when the issue was frozen), so it cannot tell them apart. Links
already sent keep working when counting is turned off (they redirect without
counting). There is no open-tracking pixel at all.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.models import ClickCount, Issue
from newsletter.rendering.clicks import MAX_URL, enabled, signed_value
from newsletter.tokens import TokenError, read_token

__all__ = ["count_click", "enabled", "url_hash", "verify_click"]


def verify_click(settings: Settings, issue_id: int, signature: str, url: str) -> str:
    """The destination if the signature matches it, else ``TokenError``."""
    if not url or len(url) > MAX_URL or urlsplit(url).scheme not in {"http", "https"}:
        raise TokenError("this link is not valid")
    read_token(settings.secret_key, "click", f"{signed_value(issue_id, url)}.{signature}")
    return url


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def count_click(session: Session, issue_id: int, url: str) -> None:
    """Add one to the link's counter (a single UPDATE; the row is created on
    the first click). Nothing about the reader is stored."""
    digest = url_hash(url)
    bump = (
        update(ClickCount)
        .where(ClickCount.issue_id == issue_id, ClickCount.url_hash == digest)
        .values(count=ClickCount.count + 1)
    )
    if session.exec(bump).rowcount:
        return
    if session.get(Issue, issue_id) is None:
        return
    try:
        with session.begin_nested():
            session.add(ClickCount(issue_id=issue_id, url_hash=digest, url=url, count=1))
    except IntegrityError:  # another click created it first
        session.exec(bump)
