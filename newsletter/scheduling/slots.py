"""The weekly slot: NEWSLETTER_SCHEDULE (5-field cron) in NEWSLETTER_TIMEZONE.

APScheduler's CronTrigger computes fire times in the named zone, so 08:00
Europe/London is 08:00 UTC in winter and 07:00 UTC in summer. Two things it
does not do, and this module adds:

* previous fire times (needed after downtime: "which slot did we miss?"), found
  by searching forward from widening windows in the past;
* one slot per wall-clock time: when clocks go back, a time such as 01:30
  happens twice and CronTrigger fires twice; the second (``fold=1``) is dropped
  so an autumn night never produces two issues.

All results are aware UTC datetimes; the scheduler compares them with
``newsletter.clock.now()``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from newsletter.delivery import localtime

# Windows searched backwards for the previous slot: short first so a
# per-minute schedule stays cheap, long last so "29 Feb" schedules are found.
_BACK_WINDOWS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
    timedelta(days=366 * 8 + 2),
)


@lru_cache(maxsize=16)
def _trigger(schedule: str, timezone: str) -> CronTrigger:
    return CronTrigger.from_crontab(schedule, timezone=timezone)


def trigger(settings) -> CronTrigger:
    return _trigger(settings.schedule, settings.timezone)


def _is_repeat(moment: datetime, tz: ZoneInfo) -> bool:
    """True for the second occurrence of an ambiguous wall time (clocks went back)."""
    local = moment.astimezone(tz)
    if local.fold != 1:
        return False
    return local.replace(fold=0).utcoffset() != local.utcoffset()


def next_slot(settings, at: datetime, *, inclusive: bool = False) -> datetime | None:
    """The first slot after ``at`` (or at ``at`` itself when ``inclusive``)."""
    tz = ZoneInfo(settings.timezone)
    cron = trigger(settings)
    start = at if inclusive else at + timedelta(microseconds=1)
    fire = cron.get_next_fire_time(None, start.astimezone(tz))
    while fire is not None and _is_repeat(fire, tz):
        fire = cron.get_next_fire_time(None, (fire.astimezone(UTC) + timedelta(seconds=1)).astimezone(tz))
    return fire.astimezone(UTC) if fire is not None else None


def previous_slot(settings, at: datetime) -> datetime | None:
    """The latest slot at or before ``at``."""
    for window in _BACK_WINDOWS:
        found = None
        fire = next_slot(settings, at - window, inclusive=True)
        while fire is not None and fire <= at:
            found = fire
            fire = next_slot(settings, fire)
        if found is not None:
            return found
    return None


def recent_slots(settings, at: datetime, *, after: datetime | None, limit: int) -> list[datetime]:
    """Up to ``limit`` slots in (after, at], newest first, walking backwards
    (so a long downtime with a per-minute schedule costs ``limit`` steps, not
    one per missed minute)."""
    slots: list[datetime] = []
    cursor = at
    while len(slots) < limit:
        slot = previous_slot(settings, cursor)
        if slot is None or (after is not None and slot <= after):
            break
        slots.append(slot)
        cursor = slot - timedelta(seconds=1)
    return slots


def upcoming(settings, at: datetime, count: int) -> list[datetime]:
    """The next ``count`` slots after ``at``."""
    slots: list[datetime] = []
    cursor = at
    for _ in range(count):
        slot = next_slot(settings, cursor)
        if slot is None:
            break
        slots.append(slot)
        cursor = slot
    return slots


def review_at(settings, slot: datetime) -> datetime:
    """When the issue for ``slot`` is assembled and sent to the editors."""
    return slot - timedelta(hours=settings.review_hours)


def grace(settings) -> timedelta:
    return timedelta(hours=settings.misfire_grace_hours)


def local(settings, moment: datetime) -> datetime:
    return moment.astimezone(ZoneInfo(settings.timezone))


def describe(settings, moment: datetime) -> str:
    """ "Mon 30 Mar 2026 08:00 BST (07:00 UTC)" — for mails, logs and the CLI."""
    here = local(settings, moment)
    utc = moment.astimezone(UTC)
    return (
        f"{here:%a %d %b %Y %H:%M %Z} ({utc:%H:%M} UTC)"
        if settings.timezone != "UTC"
        else f"{utc:%a %d %b %Y %H:%M} UTC"
    )


_DAYS = ("Sundays", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")
_DAY_NAMES = {name[:3].lower(): i for i, name in enumerate(_DAYS[:7])}


def _weekdays(field: str) -> list[int] | None:
    """Cron's day-of-week field ("mon", "1-5", "mon,thu", "sat-sun") as numbers 0-6, or None."""
    found: list[int] = []
    for part in field.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2:
            return None
        try:
            numbers = [int(e) % 7 if e.isdigit() else _DAY_NAMES[e[:3]] for e in ends]
        except KeyError:
            return None
        if len(numbers) == 2:
            start, stop = numbers
            numbers = list(range(start, (stop if stop >= start else stop + 7) + 1))
        found += [n % 7 for n in numbers]
    return sorted(set(found), key=lambda d: (d - 1) % 7)  # Monday first


def in_words(schedule: str, timezone: str) -> str:
    """The weekly slot in words, "Mondays at 08:00 (UTC)": what an editor reads on the
    dashboard instead of the cron expression. A shape it cannot say plainly is shown
    as it is ("cron 0 8 1-7 * mon (UTC)")."""
    fields = schedule.split()
    plain = f"cron {schedule} ({timezone})"
    if len(fields) != 5 or not fields[0].isdigit() or not fields[1].isdigit():
        return plain
    minute, hour, day, month, weekday = fields
    at = f"at {int(hour):02d}:{int(minute):02d} ({timezone})"
    if month != "*":
        return plain
    if day == "*" and weekday == "*":
        return f"Every day {at}"
    if day == "*":
        days = _weekdays(weekday)
        if not days:
            return plain
        if days == [1, 2, 3, 4, 5]:
            return f"Weekdays {at}"
        names = [_DAYS[d] for d in days]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"{listed} {at}"
    if weekday == "*" and day.isdigit():
        return f"Day {int(day)} of each month {at}"
    return plain


def lead(settings, now: datetime) -> timedelta:
    """Local-time delivery: how much earlier than the slot the first reader
    gets it (negative when every reader is west of NEWSLETTER_TIMEZONE; zero
    when the mode is off). The scheduler adds it to the clock, so the
    review, the send and its grace period count from the first zone. It is
    taken for the slot whose send window ``now`` can be in, so it is exact
    for that slot across DST changes."""
    if not settings.local_time_delivery:
        return timedelta(0)
    slot = next_slot(settings, now - localtime.SPREAD)
    return slot - first_moment(settings, slot) if slot is not None else timedelta(0)


def first_moment(settings, slot: datetime) -> datetime:
    """When the first reader gets the slot's issue: the slot itself, or in
    local-time mode the first zone's moment (the approval deadline)."""
    return localtime.window(settings, slot)[0] if settings.local_time_delivery else slot


def describe_send(settings, slot: datetime) -> str:
    """When the slot's issue goes out, for the editors' notices: in local-time
    mode from the first reader's moment (the approval deadline) to the last."""
    if not settings.local_time_delivery:
        return describe(settings, slot)
    first, last = localtime.window(settings, slot)
    return (
        f"{local(settings, slot):%a %d %b %Y %H:%M} in each reader's own zone: "
        f"the first readers at {describe(settings, first)} (approve before then), "
        f"the last at {describe(settings, last)}"
    )


def wall_time(settings, at: datetime | None = None) -> str:
    """ "Monday at 08:00": the next slot's wall-clock time, which local-time
    delivery reaches in every reader's own zone."""
    slot = next_slot(settings, at or datetime.now(UTC))
    return f"{local(settings, slot):%A} at {local(settings, slot):%H:%M}" if slot is not None else ""
