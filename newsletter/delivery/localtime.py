"""Local-time delivery (NEWSLETTER_LOCAL_TIME_DELIVERY): when each reader's
"Monday 08:00" is, and what that means for the send and the scheduler.

The weekly slot is a wall-clock time in NEWSLETTER_TIMEZONE. In local-time
mode every reader gets the issue when that wall-clock time comes in their
own zone (``zones.local_moments``), so one send is spread over up to 26
hours: from the first zone that reaches it (UTC+14) to the last (UTC−12).
The send still starts once, at the *first* zone's moment; each delivery row
carries its own moment in ``next_attempt_at`` and the claim takes only due
rows (``queue``). The scheduler counts the review window, the approval
deadline and the grace period from that first moment (``lead``).

The zones come from the readers themselves: the distinct zones of the
audience, read with a loose index scan of ``ix_subscriber_timezone_status``
(one index probe per zone, not a pass over a million readers), so the
scheduler can ask every tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text

from newsletter import zones
from newsletter.db import session_scope

# UTC+14 to UTC−12, and a margin: a slot's readers all get it within this.
SPREAD = timedelta(hours=27)

# The zones of the active readers, one index probe each (a "loose index scan":
# neither SQLite nor PostgreSQL skips duplicates in an index by itself).
# SQLite is told which index (it would pick ix_subscriber_status, which has
# every active reader under one key); PostgreSQL finds it by itself.
_DISTINCT_ZONES = """
    WITH RECURSIVE z(zone) AS (
        SELECT (SELECT timezone FROM subscriber {hint} WHERE status = 'active' ORDER BY timezone LIMIT 1)
        UNION ALL
        SELECT (
            SELECT timezone FROM subscriber {hint}
            WHERE timezone > z.zone AND status = 'active' ORDER BY timezone LIMIT 1
        )
        FROM z WHERE z.zone IS NOT NULL
    )
    SELECT zone FROM z WHERE zone IS NOT NULL
"""
_HINT = "INDEXED BY ix_subscriber_timezone_status"


def reader_zones(session) -> list[str]:
    """The distinct stored zones of active readers ("" = none given)."""
    hint = _HINT if session.get_bind().dialect.name == "sqlite" else ""
    return [row[0] for row in session.execute(text(_DISTINCT_ZONES.format(hint=hint)))]


@dataclass(frozen=True)
class Wave:
    """The readers of one stored zone and when they get the issue."""

    stored: str  # the reader's zone as stored ("" or, rarely, one the tz database no longer has)
    zone: str  # the zone they are sent in (``stored``, or NEWSLETTER_TIMEZONE)
    due: datetime  # aware UTC

    @property
    def fell_back(self) -> bool:
        return self.zone != self.stored


def waves(settings, slot: datetime, stored_zones) -> list[Wave]:
    """One wave per stored zone, earliest first."""
    moments = zones.local_moments(slot, settings.timezone, stored_zones)
    found = [Wave(z, zones.effective(z, settings.timezone), due) for z, due in moments.items()]
    return sorted(found, key=lambda w: (w.due, w.stored))


def window(settings, slot: datetime, session=None) -> tuple[datetime, datetime]:
    """(first, last): when the first and the last reader get the slot's
    issue. Without readers, the slot itself."""
    if session is None:
        with session_scope() as own:
            return window(settings, slot, own)
    found = waves(settings, slot, reader_zones(session) or [""])
    return found[0].due, found[-1].due
