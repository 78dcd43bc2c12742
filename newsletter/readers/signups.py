"""Sign-ups through the embedded box, counted per day and per source.

A source is the site that showed the box: its origin, plus the page path
when the box was told it (``https://blog.example.org/posts/agents``). Only
counts are kept — nothing links a reader to the page they came from.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.models import SignupCount

MAX_SOURCE = 300
UNKNOWN = "(unknown)"


def source_of(origin: str | None, page: str | None = None) -> str:
    """The counted source: the origin and the page's path, without query or
    fragment (they may carry a reader's data), cut to the column's size."""
    if not origin:
        return UNKNOWN
    path = urlsplit(page or "").path if page else ""
    if path and not path.startswith("/"):
        path = ""
    return (origin + (path if path not in ("", "/") else ""))[:MAX_SOURCE]


def count_signup(source: str) -> None:
    """Add one to today's count for ``source`` (an UPDATE, or the first INSERT
    of the day; two first requests at once settle on the UPDATE)."""
    day = clock.now().date()
    source = source[:MAX_SOURCE] or UNKNOWN
    for _ in (1, 2):
        try:
            with session_scope() as session:
                done = session.execute(
                    update(SignupCount)
                    .where(SignupCount.day == day, SignupCount.source == source)
                    .values(count=SignupCount.count + 1)
                )
                if done.rowcount == 0:
                    session.add(SignupCount(day=day, source=source, count=1))
            return
        except IntegrityError:
            continue


def by_source(days: int = 30) -> list[tuple[str, int]]:
    """(source, sign-ups) over the last ``days`` days, most first."""
    since = clock.now().date() - timedelta(days=days - 1)
    with session_scope() as session:
        total = func.sum(SignupCount.count)
        rows = session.exec(
            select(SignupCount.source, total)
            .where(SignupCount.day >= since)
            .group_by(SignupCount.source)
            .order_by(total.desc(), SignupCount.source)
            .limit(200)
        ).all()
    return [(source, int(n)) for source, n in rows]
