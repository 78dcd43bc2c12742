"""Readers' time zones: which names we accept, and when a wall-clock time
happens in a zone.

A reader's zone is an IANA name (``Asia/Kathmandu``) that their browser
reports (``Intl.DateTimeFormat().resolvedOptions().timeZone``) or an API
client, an import or the reader themselves gives. Only names the system's
tz database knows are kept (``zoneinfo.available_timezones()``, looked up
case-insensitively and stored in their canonical spelling); anything else
is not stored, the reader falls back to ``NEWSLETTER_TIMEZONE`` and the
caller counts the fallback. An empty zone means "the newsletter's zone".

``wall_moment`` turns "Monday 08:00" into the UTC moment it happens in a
zone with ``zoneinfo``, which knows every offset (+05:45, −03:30, +14) and
every DST rule: a wall time that happens twice (clocks went back) is its
first occurrence; one that does not happen (clocks went forward) is the
moment the clocks jumped past it, so nobody is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

MAX_LENGTH = 64  # the longest IANA name is 32 characters
_SHAPE = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")


@lru_cache(maxsize=1)
def _known() -> dict[str, str]:
    """Lower-cased name → canonical name, for every zone the tz database has."""
    return {name.lower(): name for name in available_timezones()}


def names() -> list[str]:
    """Every zone we accept, sorted (the preferences page's list)."""
    return sorted(_known().values())


def canonical(raw) -> str | None:
    """The canonical IANA name for ``raw``, or None if it is not one we know.
    Never raises: hostile input (non-strings, path tricks, control
    characters, megabytes) is simply not a zone."""
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    if not _SHAPE.fullmatch(value):
        return None
    return _known().get(value.lower())


def clean_zone(raw) -> tuple[str, bool]:
    """(zone to store, fell back). Nothing given is ``("", False)``; a name we
    do not know is ``("", True)``: stored as "the newsletter's zone" and
    counted by the caller."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "", False
    zone = canonical(raw)
    return (zone, False) if zone else ("", True)


def effective(zone: str, home: str) -> str:
    """The zone a reader is sent in: their own, or the newsletter's."""
    return canonical(zone) or home


def wall_clock(slot: datetime, home: str) -> datetime:
    """The naive wall-clock time of ``slot`` in the newsletter's zone
    (the "Monday 08:00" every reader gets the issue at)."""
    return slot.astimezone(ZoneInfo(home)).replace(tzinfo=None)


def wall_moment(wall: datetime, zone: str) -> datetime:
    """The aware UTC moment the naive ``wall`` time happens in ``zone``."""
    # fold=0: the first of a repeated time; a time in a DST gap is read with
    # the offset before the jump, which lands just after it (02:30 → 03:30).
    return wall.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


def local_moments(slot: datetime, home: str, zones: Iterable[str]) -> dict[str, datetime]:
    """For each zone, the UTC moment the slot's wall-clock time happens there.
    Unknown zones (and "") are sent in ``home``."""
    wall = wall_clock(slot, home)
    return {zone: wall_moment(wall, effective(zone, home)) for zone in zones}


def offset(zone: str, at: datetime) -> timedelta:
    """The zone's UTC offset at ``at`` (zero for a name we do not know)."""
    name = canonical(zone)
    return at.astimezone(ZoneInfo(name)).utcoffset() if name else timedelta(0)


def describe(moment: datetime, zone: str) -> str:
    """ "Mon 30 Mar 2026 08:00 +0545 (02:15 UTC)" """
    here = moment.astimezone(ZoneInfo(zone))
    return f"{here:%a %d %b %Y %H:%M} {zone} ({moment.astimezone(UTC):%a %H:%M} UTC)"
