"""The send of an issue: start, finish, pause, resume, cancel, and its counts.

``start_send`` moves an approved (or scheduled) issue to ``sending`` (one
conditional UPDATE: exactly one caller wins) and, in the same transaction,
freezes its renders and fans out (``fanout``); if anything fails the whole
step rolls back. ``finish_issue`` moves it to ``sent`` with its counts once
no row is open. Who then sends the rows (threads here, processes, Dramatiq
workers) is ``deliver``'s business.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, exists, func, select, update

from newsletter import clock, zones
from newsletter.config import Settings
from newsletter.db import release_pooled_memory, session_scope
from newsletter.delivery import localtime, webhooks
from newsletter.delivery.fanout import fan_out, first_readers_end, last_reader_id
from newsletter.delivery.queue import OPEN_ROWS, announce_work, issues_in_scope, reclaim_expired_leases
from newsletter.issues import states
from newsletter.issues.service import IssueNotFound, content_problems, require_issue
from newsletter.models import DELIVERY_STATUSES, Delivery, Issue
from newsletter.rendering.issue import freeze_issue

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
issues = Issue.__table__


class DeliveryError(Exception):
    """Base of the send's refusals (the CLI prints the message)."""


UnknownIssue = IssueNotFound  # (a LookupError)


class AlreadySending(DeliveryError):
    """Another caller already started (or paused) this issue."""


class NotSendable(DeliveryError):
    """The issue is not in a state that can be sent (draft, sent, cancelled)."""


@dataclass
class IssueCounts:
    number: int
    status: str
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.pending + self.sending


def issue_counts(session, issue_id: int) -> dict:
    """Delivery rows of an issue by status, plus ``total``."""
    rows = session.execute(
        select(deliveries.c.status, func.count())
        .where(deliveries.c.issue_id == issue_id)
        .group_by(deliveries.c.status)
    ).all()
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    for status, count in rows:
        counts[status] = count
    counts["total"] = sum(count for _, count in rows)
    return counts


@dataclass
class ZoneCounts:
    """A send's rows in one zone (local-time delivery): ``scheduled`` are
    first attempts still to come (their zone's moment has not come yet),
    ``other`` everything else still open (due, retrying, on the wire)."""

    zone: str
    sent: int = 0
    scheduled: int = 0
    other: int = 0
    failed: int = 0
    skipped: int = 0
    due: datetime | None = None  # the zone's moment, while its readers are still scheduled


def zone_counts(number: int) -> list[ZoneCounts]:
    """Rows of issue ``number`` by zone, the first zone (east) first: one
    GROUP BY over the issue's rows. Empty for a send to everyone at once,
    found from one row (every row of a send has a zone, or none has), so the
    API's status, which clients poll, costs no second pass over such a send."""
    now = clock.now()
    scheduled = (deliveries.c.attempts == 0) & (deliveries.c.next_attempt_at > now)
    with session_scope() as session:
        issue = require_issue(session, number)
        one = select(deliveries.c.timezone).where(deliveries.c.issue_id == issue.id).limit(1)
        if not session.scalar(one):
            return []
        rows = session.execute(
            select(
                deliveries.c.timezone,
                deliveries.c.status,
                func.count(),
                func.sum(case((scheduled, 1), else_=0)),
                func.min(deliveries.c.next_attempt_at),
            )
            .where(deliveries.c.issue_id == issue.id, deliveries.c.timezone != "")
            .group_by(deliveries.c.timezone, deliveries.c.status)
        ).all()
    found: dict[str, ZoneCounts] = {}
    for zone, status, count, later, due in rows:
        one = found.setdefault(zone, ZoneCounts(zone))
        if status in ("sent", "failed", "skipped"):
            setattr(one, status, getattr(one, status) + count)
            continue
        one.other += count - (later or 0)
        if status == "pending" and later:
            one.scheduled += later
            one.due = _aware(due)
    return sorted(found.values(), key=lambda z: (-zones.offset(z.zone, now), z.zone))


def waves_to_come(issue_id: int) -> list[tuple[datetime, str, int]]:
    """(moment, zone, readers) of the waves not yet due, earliest first: the
    pending first attempts after now (read from ``ix_delivery_claim``)."""
    now = clock.now()
    with session_scope() as session:
        rows = session.execute(
            select(deliveries.c.next_attempt_at, deliveries.c.timezone, func.count())
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.status == "pending",
                deliveries.c.next_attempt_at > now,
                deliveries.c.attempts == 0,
            )
            .group_by(deliveries.c.next_attempt_at, deliveries.c.timezone)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.timezone)
        ).all()
    return [(_aware(due), zone, count) for due, zone, count in rows]


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def counts_for(number: int) -> IssueCounts:
    with session_scope() as session:
        issue = require_issue(session, number)
        return IssueCounts(number=number, status=issue.status, **issue_counts(session, issue.id))


def issue_id_for(number: int) -> int:
    with session_scope() as session:
        return require_issue(session, number).id


# A send whose caller sends the rows itself fans out its first readers in the
# start's transaction and the rest in parts of this many readers' ids while
# it sends (``complete_fan_out``), under a lease on the issue of this long.
FAN_OUT_PART = 20_000
FAN_OUT_LEASE_SECONDS = 60


def start_send(
    settings: Settings, number: int, *, local_slot: datetime | None = None, first_rows: int | None = None
) -> Issue:
    """approved|scheduled → sending (one winner), freeze, fan out; one transaction.
    Content that reads as a marker, or a render whose markers are not its
    template's (``placeholders.MarkerError``), rolls it all back.

    ``local_slot`` (the scheduler's weekly slot, in local-time mode): each
    reader's row is due when the slot's wall-clock time comes in their zone
    (``localtime.waves``). Without it every row is due now: "send now" means
    everyone now, whatever the mode.

    ``first_rows`` (a caller that sends the rows itself, ``deliver``): the
    transaction fans out only the first that many readers when there are
    more, and leaves the issue ``fanning_out_until`` a lease: the caller's
    senders start on those rows while it adds the rest
    (``complete_fan_out``). A million rows take seconds to insert; the
    first message no longer waits for them."""
    with session_scope() as session:
        issue = require_issue(session, number)
        now = clock.now()
        if not states.move(session, issue.id, states.START, send_started_at=now):
            session.refresh(issue)
            if issue.status in states.IN_FLIGHT:
                raise AlreadySending(f"issue {number} is already {issue.status}")
            raise NotSendable(
                f"issue {number} is {issue.status}; only an approved or scheduled issue can be sent"
            )
        session.refresh(issue)
        problems = content_problems(session, issue)
        if problems:  # approved before approval checked it: never sent
            raise NotSendable(f"issue {number} cannot be sent: {problems[0].message}")
        freeze_issue(session, issue, settings)
        session.flush()
        waves = None
        if local_slot is not None:
            waves = localtime.waves(settings, local_slot, localtime.reader_zones(session))
            unknown = [wave.stored for wave in waves if wave.fell_back and wave.stored]
            if unknown:
                log.warning(
                    "issue %s: zones unknown to the tz database, sent at %s: %s",
                    number,
                    settings.timezone,
                    unknown,
                )
        first_end = first_readers_end(session, first_rows) if first_rows and waves is None else None
        if first_end is None:
            fan_out(session, issue.id, waves)
        else:
            fan_out(session, issue.id, ids=(0, first_end))
        recipients = _rows_of(session, issue.id)
        session.execute(
            update(issues)
            .where(Issue.id == issue.id)
            .values(recipients=recipients, fanning_out_until=_fan_out_lease() if first_end else None)
        )
        session.refresh(issue)
    log.info("issue %s: sending to %s recipients", number, recipients)
    announce_work()
    release_memory()
    return issue


def _rows_of(session, issue_id: int) -> int:
    """The issue's delivery rows: its recipients once the fan-out is done."""
    return session.execute(select(func.count()).where(deliveries.c.issue_id == issue_id)).scalar()


def _fan_out_lease() -> datetime:
    return clock.now() + timedelta(seconds=FAN_OUT_LEASE_SECONDS)


def _hold_fan_out(session, issue_id: int, *, take_over: bool) -> bool:
    """Renew the fan-out's lease on the issue (or, ``take_over``, take a
    lease that ran out: its fan-out's process died); False when the issue
    is no longer sending or paused (cancelled), its fan-out is complete, or
    another process holds a live lease. The UPDATE also orders a part of
    the fan-out against a cancel (the issue's row lock; SQLite's one
    writer): a cancel either sees the part's rows or stops the next part."""
    held = (issues.c.fanning_out_until < clock.now()) if take_over else issues.c.fanning_out_until.isnot(None)
    statement = (
        update(issues)
        .where(issues.c.id == issue_id, issues.c.status.in_(states.IN_FLIGHT), held)
        .values(fanning_out_until=_fan_out_lease())
    )
    return session.execute(statement).rowcount == 1


def complete_fan_out(issue_id: int, *, take_over: bool = False, stop=None) -> int | None:
    """Add the rows the send's first transaction left for later, a part of
    ``FAN_OUT_PART`` readers' ids a transaction (each part's rows can be
    claimed as soon as it commits, and SQLite's senders wait for no more
    than one part to record their batches), then clear the lease and store
    the issue's recipients. Each part skips readers who already have a row,
    so a part done twice (by a process that took over) adds nobody twice.
    Returns the recipients, or None when it stopped: the issue was
    cancelled, ``stop`` was set, or (``take_over``) another process's
    fan-out is alive. Stopped by ``stop`` or an error (Ctrl-C), it lets its
    lease run out at once, so the next ``issue send N`` takes over now, not
    a minute later.

    The senders meanwhile do not finish (``queue.open_rows`` counts the
    lease as open work), and ``finish_issue`` waits for the lease to go."""
    with session_scope() as session:
        last = last_reader_id(session)
    try:
        for low in range(0, last + 1, FAN_OUT_PART):
            if stop is not None and stop.is_set():
                _give_up_fan_out(issue_id)
                return None
            with session_scope() as session:
                if not _hold_fan_out(session, issue_id, take_over=take_over and low == 0):
                    return None
                fan_out(session, issue_id, ids=(low, low + FAN_OUT_PART - 1))
            announce_work()
    except BaseException:
        _give_up_fan_out(issue_id)
        raise
    with session_scope() as session:
        recipients = _rows_of(session, issue_id)
        done = session.execute(
            update(issues)
            .where(issues.c.id == issue_id, issues.c.fanning_out_until.isnot(None))
            .values(recipients=recipients, fanning_out_until=None)
        ).rowcount
    announce_work()
    return recipients if done else None


def _give_up_fan_out(issue_id: int) -> None:
    """End this process's lease now (best effort: if this fails too, the
    lease runs out by itself)."""
    try:
        with session_scope() as session:
            session.execute(
                update(issues)
                .where(issues.c.id == issue_id, issues.c.fanning_out_until.isnot(None))
                .values(fanning_out_until=clock.now() - timedelta(seconds=1))
            )
    except Exception:  # noqa: BLE001 - the lease will expire
        log.exception("issue id %s: could not end the fan-out's lease", issue_id)


def take_over_fan_outs(issue_id: int | None = None) -> int:
    """Complete the fan-outs (of ``issue_id``, or of every sending issue)
    whose process died mid-way: their lease ran out. Returns how many."""
    with session_scope() as session:
        stale = (
            session.execute(
                select(issues.c.id).where(issues_in_scope(issue_id), issues.c.fanning_out_until < clock.now())
            )
            .scalars()
            .all()
        )
    done = 0
    for stale_id in stale:
        if complete_fan_out(stale_id, take_over=True) is not None:
            log.warning("issue id %s: completed the fan-out a stopped process had left", stale_id)
            done += 1
    return done


def release_memory() -> None:
    """Give back what the freeze and the fan-out used (SQLite's enlarged page
    cache, MJML) before a long send: release the pooled connections' memory
    (``db.release_pooled_memory``) and ask glibc to return freed heap to the
    system, so the sender's RSS stays small."""
    release_pooled_memory()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def finish_issue(issue_id: int) -> bool:
    """sending → sent when no row is open; stores the counts. One winner."""
    with session_scope() as session:
        counts = issue_counts(session, issue_id)
        if counts["pending"] or counts["sending"]:
            return False
        finished = states.move(
            session,
            issue_id,
            states.FINISH,
            where=~exists().where(deliveries.c.issue_id == issue_id, deliveries.c.status.in_(OPEN_ROWS))
            & issues.c.fanning_out_until.is_(None),
            sent_at=clock.now(),
            sent_count=counts["sent"],
            failed_count=counts["failed"],
            skipped_count=counts["skipped"],
        )
        if finished:  # the one winner tells the integrations, in the same transaction
            number = session.execute(select(Issue.number).where(Issue.id == issue_id)).scalar_one()
            data = {"number": number, **{k: counts[k] for k in ("total", "sent", "failed", "skipped")}}
            webhooks.emit(session, "issue.sent", data)
            if counts["failed"]:
                webhooks.emit(session, "issue.failed", data)
        return finished


def pause_issue_by_id(issue_id: int, reason: str = "") -> bool:
    with session_scope() as session:
        done = states.move(session, issue_id, states.PAUSE)
    if done and reason:
        log.error("issue paused: %s", reason)
    return done


def _transition(number: int, transition: states.Transition, **values) -> Issue:
    with session_scope() as session:
        issue = require_issue(session, number)
        done = states.move(session, issue.id, transition, **values)
        session.refresh(issue)
        if not done:
            raise NotSendable(
                f"issue {number} is {issue.status}, not {' or '.join(sorted(transition.sources))}"
            )
        return issue


def pause_issue(number: int) -> Issue:
    """Stop claiming new batches; batches already on the wire finish."""
    return _transition(number, states.PAUSE)


def resume_issue(number: int) -> Issue:
    """paused → sending; the senders (or `issue send N`) continue the queue."""
    issue = _transition(number, states.RESUME)
    announce_work()
    return issue


def cancel_sending(number: int) -> Issue:
    """sending|paused → cancelled; every row still pending is skipped with the
    reason (rows on the wire finish and are recorded)."""
    now = clock.now()
    with session_scope() as session:
        issue = require_issue(session, number)
        if not states.move(session, issue.id, states.CANCEL_SEND, cancelled_at=now, fanning_out_until=None):
            session.refresh(issue)
            raise NotSendable(
                f"issue {number} is {issue.status}, not {' or '.join(sorted(states.IN_FLIGHT))}"
            )
        session.execute(
            update(deliveries)
            .where(deliveries.c.issue_id == issue.id, deliveries.c.status == "pending")
            .values(status="skipped", last_error="issue cancelled", updated_at=now)
        )
        counts = issue_counts(session, issue.id)
        session.execute(
            update(issues)
            .where(Issue.id == issue.id)
            .values(sent_count=counts["sent"], failed_count=counts["failed"], skipped_count=counts["skipped"])
        )
        session.refresh(issue)
        return issue


def resume_unfinished(settings: Settings) -> list[int]:
    """On process start: reclaim expired leases, complete fan-outs whose
    process died, finish issues whose rows are all done, and return the
    numbers of issues still sending."""
    reclaim_expired_leases(settings)
    take_over_fan_outs()
    with session_scope() as session:
        sending = session.execute(select(Issue.id, Issue.number).where(Issue.status == states.SENDING)).all()
    return [number for issue_id, number in sending if not finish_issue(issue_id)]
