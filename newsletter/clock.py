"""The one clock the code reads, so tests can move time.

``now()`` returns an aware UTC datetime (SQLModel's UTCDateTime columns
store and return aware UTC on SQLite and PostgreSQL alike). Tests call
``clock.set(datetime)`` / ``clock.advance(timedelta)`` and ``clock.reset()``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None
_source = None  # optional callable returning aware UTC (test-only clocks of subprocesses)


def now() -> datetime:
    if _frozen is not None:
        return _frozen
    if _source is not None:
        return _source()
    return datetime.now(UTC)


def set_source(source) -> None:
    """Let ``now()`` read another clock (a callable returning aware UTC), or the
    wall clock again with None. Used by the scheduler's test-only clock file
    (NEWSLETTER_TEST_CLOCK_FILE, honoured only when NEWSLETTER_ENV=testing) so
    end-to-end tests can move the time of real subprocesses."""
    global _source
    _source = source


def timestamp() -> float:
    """``now()`` as a POSIX timestamp, without building a datetime when the
    clock is the wall clock (read for every message's Date header)."""
    if _frozen is None and _source is None:
        return time.time()
    return now().timestamp()


def now_aware() -> datetime:
    return now()


def set(value: datetime) -> None:  # noqa: A001 - reads well as clock.set(...)
    global _frozen
    if value.tzinfo is None:
        raise ValueError("clock.set needs an aware datetime")
    _frozen = value.astimezone(UTC)


def advance(delta: timedelta) -> None:
    set(now() + delta)


def reset() -> None:
    global _frozen
    _frozen = None
