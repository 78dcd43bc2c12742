"""What the scheduler does, decided from the clock and the JobRun rows.

APScheduler only wakes us every few seconds; ``tick()`` then reads
``newsletter.clock.now()``, works out the last due slot and the next review
time, looks at what JobRun says was already done, and acts. Nothing depends
on APScheduler having fired at the right moment, so the logic is the same
after a restart, after downtime, with two processes, or in a test that moves
the clock.

The weekly cycle, for each slot S of NEWSLETTER_SCHEDULE:

* review (S - NEWSLETTER_REVIEW_HOURS ≤ now < S): assemble the issue as a
  draft for S (``issues.service.assemble_issue``, idempotent per slot) and
  mail the editors its preview link;
* send (S ≤ now ≤ S + grace): assemble (same draft) and send it if approved
  or NEWSLETTER_AUTO_SEND; otherwise mark it *waiting*, tell the editors,
  and send it as soon as it is approved within the grace period. An empty
  week sends nothing and says so;
* local-time delivery (NEWSLETTER_LOCAL_TIME_DELIVERY): every reader gets
  the issue at the slot's wall-clock time in their own zone. The slot's
  clock runs ``slots.lead`` ahead (the first zone reaches the slot that much
  earlier), so the review, the send and the grace period all count from
  the first zone; the send starts once, and each reader's delivery row is
  due at their own moment (``delivery.localtime``);
* misfires: only the latest due slot can run, and only within
  NEWSLETTER_MISFIRE_GRACE_HOURS; older missed slots are recorded as
  *skipped* and reported to the editors.

Besides the weekly slot, an editor can schedule an issue for a time of
their own (``issues.service.schedule_issue``): every tick sends each
``scheduled`` issue whose ``scheduled_for`` has come, claimed as the JobRun
("timed:<number>", scheduled_for). The weekly slot leaves such an issue to
its own time. A time missed by more than the grace period (the scheduler
was down) is not sent late: the issue returns to approved and the editors
are told.

At most one issue and one send per slot: the JobRun (job, slot) row is
claimed by INSERT (one winner), ``Issue.slot_at`` is unique and
``start_send`` moves an issue to sending with one conditional UPDATE.

Housekeeping runs on fixed periods, each period claimed as a JobRun row too
(so two processes never both run it): reclaim expired leases and resume
unfinished sends, poll feeds, poll the bounce mailbox, delete old rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from newsletter import clock
from newsletter.content.feeds import poll_configured_feeds
from newsletter.db import get_engine, session_scope
from newsletter.delivery.deliver import deliver
from newsletter.delivery.queue import reclaim_expired_leases
from newsletter.delivery.send import resume_unfinished
from newsletter.feedback.mailbox import poll_bounce_mailbox
from newsletter.issues import states
from newsletter.issues.service import approve_issue, assemble_issue, issue_articles
from newsletter.models import (
    AuditEntry,
    Event,
    IdempotencyRecord,
    Issue,
    JobRun,
    LoginThrottle,
    OutboxMessage,
    SubscribeRequest,
    TransactionalMail,
    WebhookReplay,
)
from newsletter.scheduling import notices, runs, slots

log = logging.getLogger("newsletter.scheduler")

REVIEW = "review"
SEND = "send"
WEEKLY_JOBS = (REVIEW, SEND)
RETRY_AFTER = timedelta(minutes=5)  # a failed weekly job is tried again this often within the grace period
EMPTY_RECHECK = timedelta(minutes=15)  # an empty review looks again for new articles this often
MAX_MISSED = 52  # missed slots recorded one by one after downtime; older ones are summarised
SENDABLE = states.STARTABLE
HANDLED = states.PUBLIC  # the send has started (or is over): nothing for the slot to do
RETENTION_BATCH = 5000
IDEMPOTENCY_KEEP = timedelta(
    days=1
)  # a retried POST within a day gets its first answer (then the key is free)
HOUSEKEEPING_KEEP = timedelta(days=2)  # JobRun rows of the periodic jobs are only kept briefly
THROTTLE_KEEP = timedelta(days=1)  # a client's failed logins are forgotten a day after its last attempt
BEFORE_INSTALL = "before this installation's first scheduler run: nothing to send, nothing missed"


@dataclass(frozen=True)
class Mode:
    """How this process delivers an issue it starts.

    ``dispatch``: run the sender pool here and wait (``newsletter scheduler``
    alone beside gunicorn); otherwise only ``start_send`` and let the
    in-process sender of ``newsletter serve`` pick it up. With
    NEWSLETTER_BROKER_URL the Dramatiq workers always send.
    """

    dispatch: bool = True


# --- the weekly cycle -------------------------------------------------------------


def tick(settings, *, now: datetime | None = None, mode: Mode = Mode()) -> list[str]:
    """One look at the clock; returns what was done (for logs and tests)."""
    now = now or clock.now()
    at = now + slots.lead(settings, now)  # the slots' clock: ahead by the first zone's lead
    actions: list[str] = []
    actions += _timed_cycle(settings, now, mode)
    actions += _send_cycle(settings, now, mode, at)
    actions += _review_cycle(settings, now, at)
    for line in actions:
        log.info("scheduler: %s", line)
    return actions


def _send_cycle(settings, now: datetime, mode: Mode, at: datetime | None = None) -> list[str]:
    """``now`` is the clock (runs' timings, the articles' window); ``at`` the
    slots' clock (``now`` unless local-time delivery moves it ahead)."""
    at = at or now
    actions: list[str] = []
    grace = slots.grace(settings)
    latest = slots.previous_slot(settings, at)
    # Rows left open (waiting, failed, orphaned) for slots that are over.
    for run in runs.open_runs(SEND):
        if run.slot_at != latest or at - run.slot_at > grace:
            actions += _expire(settings, run, now)
    if latest is None:
        return actions
    recorded = runs.latest_slot(SEND)
    if recorded is None or latest > recorded:
        more, claimed = _new_due_slots(settings, at, latest, recorded)
        actions += more
        if claimed:
            return actions + _run_send(settings, latest, now, mode, previous="started")
    run = runs.get(SEND, latest)
    if run is None or at - latest > grace:
        return actions
    if (
        run.state == "waiting"
        or (run.state == "started" and _orphaned(settings, run, now))
        or (run.state == "failed" and _retry_due(run, now))
    ):
        actions += _run_send(settings, latest, now, mode, previous=run.state)
    return actions


def _orphaned(settings, run: JobRun, now: datetime) -> bool:
    """A row still "started" a lock lease after it was claimed belongs to a
    process that died (its lock has passed on) or to a very long send. Every
    step is idempotent (the issue of a slot is unique, start_send has one
    winner, deliveries are leased), so it is simply run again."""
    return now - runs._aware(run.created_at) > timedelta(seconds=settings.scheduler_lock_seconds)


def _retry_due(run: JobRun, now: datetime, after: timedelta = RETRY_AFTER) -> bool:
    return run.finished_at is None or now - runs._aware(run.finished_at) >= after


def _new_due_slots(
    settings, now: datetime, latest: datetime, recorded: datetime | None
) -> tuple[list[str], bool]:
    """Slots that came since the last recorded one: the newest is claimed to
    run if within grace; every older one (and the newest, if too old) is
    recorded as skipped and reported. Returns (actions, newest claimed)."""
    actions: list[str] = []
    grace = slots.grace(settings)
    if recorded is None and now - latest > grace:
        # The very first start of a new installation, past the grace period of
        # the latest slot: that slot (and every one before) predates the
        # installation. Nothing was missed; it is only recorded, as the point
        # the weekly cycle counts from.
        runs.claim(SEND, latest, state="skipped", detail=BEFORE_INSTALL)
        log.info(
            "first start: the slot of %s predates this installation; the weekly cycle starts with the next one",
            slots.describe(settings, latest),
        )
        return actions, False
    # On the very first start only the latest slot counts: older ones predate the scheduler.
    due = slots.recent_slots(settings, now, after=recorded, limit=MAX_MISSED if recorded is not None else 1)
    missed: list[str] = []
    for slot in due[1:]:
        detail = f"missed while the scheduler was down; superseded by the slot of {slots.describe(settings, latest)}"
        if runs.claim(SEND, slot, state="skipped", detail=detail):
            missed.append(slots.describe(settings, slot))
    claimed = False
    late = now - latest
    if late > grace:
        detail = f"missed by {_hours(late)}, more than the {settings.misfire_grace_hours} h grace period"
        if runs.claim(SEND, latest, state="skipped", detail=detail):
            missed.insert(0, f"{slots.describe(settings, latest)} (missed by {_hours(late)})")
    else:
        claimed = runs.claim(SEND, latest, detail="running")
        if claimed and late > timedelta(minutes=1):
            log.warning(
                "the slot of %s runs %s late (within the grace period)",
                slots.describe(settings, latest),
                _hours(late),
            )
    if missed:
        actions.append(f"send: skipped {len(missed)} missed slot(s)")
        log.warning("skipped missed slot(s): %s", "; ".join(missed))
        plural = "s" if len(missed) > 1 else ""
        notices.notify(
            settings, "review_missed", f"Missed slot{plural}: nothing was sent late", missed=missed, intro=""
        )
    return actions, claimed


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _run_send(settings, slot: datetime, now: datetime, mode: Mode, *, previous: str) -> list[str]:
    """Assemble (idempotent) and send the issue of ``slot`` if it may go out."""

    if previous != "started" and not runs.move(
        SEND, slot, expect=previous, state="started", detail="running"
    ):
        return []  # somebody else moved it
    label = f"send {slot.isoformat()}"
    try:
        result = assemble_issue(settings, now=now, slot_at=slot)
        issue = result.issue
        if issue is None:
            runs.move(
                SEND,
                slot,
                expect="started",
                state="done",
                detail=f"empty week: {result.message}",
                then=notices.notice(
                    settings,
                    "review_empty",
                    "No issue this week",
                    slot_text=slots.describe(settings, slot),
                    reason=result.message,
                ),
            )
            log.warning("empty week for the slot of %s: %s", slots.describe(settings, slot), result.message)
            return [f"{label}: empty week, nothing sent"]
        if issue.status in HANDLED:
            runs.move(
                SEND, slot, expect="started", state="done", detail=f"{issue.label} is already {issue.status}"
            )
            return [f"{label}: {issue.label} already {issue.status}"]
        if issue.status == states.CANCELLED:
            runs.move(
                SEND, slot, expect="started", state="done", detail=f"{issue.label} was cancelled by an editor"
            )
            return [f"{label}: {issue.label} cancelled"]
        if (
            issue.status == states.SCHEDULED
            and issue.scheduled_for is not None
            and runs._aware(issue.scheduled_for) > now
        ):
            when = slots.describe(settings, runs._aware(issue.scheduled_for))
            runs.move(
                SEND,
                slot,
                expect="started",
                state="done",
                detail=f"{issue.label} is scheduled for {when}: sent at that time, not at the slot",
            )
            return [f"{label}: {issue.label} left to its scheduled time ({when})"]
        if issue.status not in SENDABLE and settings.auto_send:
            issue = approve_issue(issue.number, by="auto-send")
        if issue.status not in SENDABLE:
            told = notices.notice(
                settings,
                "review_waiting",
                f"{issue.label} is waiting for approval",
                issue_label=issue.label,
                issue_title=issue.title,
                issue_status=issue.status,
                slot_text=slots.describe_send(settings, slot),
                preview_url=notices.preview_url(settings, issue.number),
            )
            runs.move(
                SEND,
                slot,
                expect="started",
                state="waiting",
                detail=f"{issue.label} is {issue.status}: waiting for an editor's approval",
                then=told if previous != "waiting" else None,
            )
            return [f"{label}: {issue.label} waiting for approval"] if previous != "waiting" else []
        outcome = _deliver(settings, issue.number, mode, slot=slot)
        runs.move(SEND, slot, expect="started", state="done", detail=f"{issue.label}: {outcome}")
        return [f"{label}: {issue.label} {outcome}"]
    except Exception as exc:  # noqa: BLE001 - recorded, reported, retried within the grace period
        log.exception("the send job for %s failed", slot.isoformat())
        told = notices.notice(
            settings,
            "review_failed",
            "The scheduler could not send this week's issue",
            action="send this week's issue",
            slot_text=slots.describe(settings, slot),
            error=f"{exc.__class__.__name__}: {exc}"[:500],
        )
        runs.move(
            SEND,
            slot,
            expect="started",
            state="failed",
            detail=f"{exc.__class__.__name__}: {exc}",
            then=told if previous != "failed" else None,
        )
        return [f"{label}: failed ({exc.__class__.__name__})"]


# --- issues scheduled for a time of their own -----------------------------------------


def _timed_cycle(settings, now: datetime, mode: Mode) -> list[str]:
    """Send every scheduled issue whose time has come (a handful at most)."""
    t = Issue.__table__.c
    with get_engine().connect() as conn:
        due = conn.execute(
            select(t.number, t.scheduled_for)
            .where(t.status == states.SCHEDULED, t.scheduled_for.is_not(None), t.scheduled_for <= now)
            .order_by(t.scheduled_for, t.number)
        ).all()
    actions: list[str] = []
    for number, when in due:
        actions += _run_timed(settings, number, runs._aware(when), now, mode)
    return actions


def scheduled_issues() -> list[tuple[int, datetime]]:
    """(number, scheduled_for) of every issue scheduled for a time, soonest first (for `newsletter schedule`)."""
    t = Issue.__table__.c
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(t.number, t.scheduled_for)
            .where(t.status == states.SCHEDULED, t.scheduled_for.is_not(None))
            .order_by(t.scheduled_for, t.number)
        ).all()
    return [(number, runs._aware(when)) for number, when in rows]


def timed_job(number: int) -> str:
    return f"timed:{number}"


def _run_timed(settings, number: int, when: datetime, now: datetime, mode: Mode) -> list[str]:
    """Send one scheduled issue once: the JobRun (timed:<n>, when) is claimed
    by INSERT, start_send has one winner; a failure is retried every few
    minutes and reported once; a time missed by more than the grace period
    is not sent late."""
    job, label = timed_job(number), f"Issue {number:03d}"
    if now - when > slots.grace(settings):
        return _timed_missed(settings, number, when, now)
    run = runs.get(job, when)
    if run is None:
        if not runs.claim(job, when, detail="running"):
            return []
        previous = "started"
    elif (run.state == "failed" and _retry_due(run, now)) or (
        run.state == "started" and _orphaned(settings, run, now)
    ):
        previous = run.state
        if previous != "started" and not runs.move(
            job, when, expect=previous, state="started", detail="running"
        ):
            return []
    else:
        return []
    try:
        outcome = _deliver(settings, number, mode)
    except Exception as exc:  # noqa: BLE001 - recorded, reported once, retried within the grace period
        log.exception("the timed send of issue %s failed", number)
        told = notices.notice(
            settings,
            "review_failed",
            f"The scheduler could not send {label}",
            action=f"send {label} at its scheduled time",
            slot_text=slots.describe(settings, when),
            error=f"{exc.__class__.__name__}: {exc}"[:500],
        )
        runs.move(
            job,
            when,
            expect="started",
            state="failed",
            detail=f"{exc.__class__.__name__}: {exc}",
            then=told if previous != "failed" else None,
        )
        return [f"timed {label}: failed ({exc.__class__.__name__})"]
    runs.move(job, when, expect="started", state="done", detail=f"{label}: {outcome}")
    return [f"timed {label} ({when.isoformat()}): {outcome}"]


def _timed_missed(settings, number: int, when: datetime, now: datetime) -> list[str]:
    """Back to approved (one conditional UPDATE: one process reports it)."""
    t = Issue.__table__.c
    late = _hours(now - when)
    with get_engine().begin() as conn:
        issue_id = conn.execute(select(t.id).where(t.number == number)).scalar()
        changed = issue_id is not None and states.move(
            conn,
            issue_id,
            states.UNSCHEDULE,
            where=t.scheduled_for == when,
            scheduled_for=None,
            updated_at=now,
        )
        if changed:
            notices.notify(
                settings,
                "review_missed",
                f"Issue {number:03d} was not sent at its time",
                within=conn,
                missed=[
                    f"Issue {number:03d}, scheduled for {slots.describe(settings, when)} (missed by {late})"
                ],
                intro=f"The scheduler was not running at this time and it is now past the {settings.misfire_grace_hours}-hour "
                "grace period, so the issue was not sent late. It is approved again: send it or schedule it anew:",
            )
    if not changed:
        return []
    log.warning("Issue %03d was scheduled for %s and is %s late: not sent", number, when.isoformat(), late)
    return [f"timed Issue {number:03d}: missed by {late}, returned to approved"]


def _deliver(settings, number: int, mode: Mode, *, slot: datetime | None = None) -> str:
    """Start the send (``deliver``) and, depending on the process, send it here.
    The weekly ``slot`` goes out at its wall-clock time in each reader's zone
    in local-time mode; a timed send is everyone at once."""
    local_slot = slot if settings.local_time_delivery else None
    counts = deliver(settings, number, here=mode.dispatch, local_slot=local_slot)
    if settings.broker_url:
        return "handed to the workers"
    if not mode.dispatch:
        return f"sending to {counts.total} readers (in-process sender)"
    return f"{counts.status}: {counts.sent} sent, {counts.failed} failed, {counts.skipped} skipped of {counts.total}"


def _expire(settings, run: JobRun, now: datetime) -> list[str]:
    """Close an open row whose slot is over (or past its grace period)."""

    with get_engine().connect() as conn:
        row = conn.execute(
            select(Issue.__table__.c.number, Issue.__table__.c.status).where(
                Issue.__table__.c.slot_at == run.slot_at
            )
        ).first()
    if row is not None and (row.status in HANDLED or row.status == "scheduled"):
        runs.move(
            SEND,
            run.slot_at,
            expect=run.state,
            state="done",
            detail=f"Issue {row.number:03d} is {row.status}",
        )
        return []
    detail = f"grace period over while {run.state}: {run.detail}"
    told = notices.notice(
        settings,
        "review_missed",
        "A slot passed without a send",
        missed=[f"{slots.describe(settings, run.slot_at)} ({run.state}: {run.detail})"],
        intro=f"The {settings.misfire_grace_hours}-hour grace period after this slot ended and its issue "
        "was not sent, so the scheduler will no longer send it by itself:",
    )
    if not runs.move(SEND, run.slot_at, expect=run.state, state="expired", detail=detail, then=told):
        return []
    return [f"send {run.slot_at.isoformat()}: expired ({run.state})"]


def _review_cycle(settings, now: datetime, at: datetime | None = None) -> list[str]:
    at = at or now
    if settings.review_hours <= 0:
        return []  # assembled at the slot itself
    upcoming = slots.next_slot(settings, at)
    if upcoming is None or at < slots.review_at(settings, upcoming):
        return []
    run = runs.get(REVIEW, upcoming)
    if run is None:
        if not runs.claim(REVIEW, upcoming):
            return []
        previous = "started"
    elif run.state == "failed" and _retry_due(run, now):
        previous = "failed"
    elif run.state == "empty" and _retry_due(run, now, EMPTY_RECHECK):
        previous = "empty"
    elif run.state == "started" and _orphaned(settings, run, now):
        previous = "started"
    else:
        return []
    return _run_review(settings, upcoming, now, previous=previous)


def _run_review(settings, slot: datetime, now: datetime, *, previous: str) -> list[str]:

    if previous != "started" and not runs.move(
        REVIEW, slot, expect=previous, state="started", detail="running"
    ):
        return []
    label = f"review {slot.isoformat()}"
    try:
        result = assemble_issue(settings, now=now, slot_at=slot)
        issue = result.issue
        if issue is None:
            runs.move(REVIEW, slot, expect="started", state="empty", detail=result.message)
            return [f"{label}: nothing to assemble yet"] if previous != "empty" else []
        with session_scope() as session:
            count = len(issue_articles(session, issue))
        runs.move(
            REVIEW,
            slot,
            expect="started",
            state="done",
            detail=f"{issue.label} assembled ({count} articles); editors told",
            then=notices.notice(
                settings,
                "review",
                f"Review {issue.label} before {slots.describe(settings, slot - slots.lead(settings, now))}",
                issue_label=issue.label,
                issue_title=issue.title,
                article_count=count,
                slot_text=slots.describe_send(settings, slot),
                preview_url=notices.preview_url(settings, issue.number),
            ),
        )
        return [f"{label}: {issue.label} assembled, editors told"]
    except Exception as exc:  # noqa: BLE001 - recorded, reported, retried until the slot
        log.exception("the review job for %s failed", slot.isoformat())
        told = notices.notice(
            settings,
            "review_failed",
            "The scheduler could not assemble the next issue",
            action="assemble the next issue",
            slot_text=slots.describe(settings, slot),
            error=f"{exc.__class__.__name__}: {exc}"[:500],
        )
        runs.move(
            REVIEW,
            slot,
            expect="started",
            state="failed",
            detail=f"{exc.__class__.__name__}: {exc}",
            then=told if previous != "failed" else None,
        )
        return [f"{label}: failed ({exc.__class__.__name__})"]


# --- housekeeping -----------------------------------------------------------------


def _resume(settings, mode: Mode) -> str:
    reclaimed = reclaim_expired_leases(settings)
    sending = resume_unfinished(settings)
    if sending and mode.dispatch and not settings.broker_url:
        for number in sending:
            deliver(settings, number, here=True)
    return f"{reclaimed} leases reclaimed; sending: {', '.join(map(str, sending)) or 'none'}"


def _feeds(settings, mode: Mode) -> str:

    results = poll_configured_feeds(settings)
    return "; ".join(
        f"{url}: {r if isinstance(r, str) else f'{r.created} new, {r.updated} updated'}"
        for url, r in results.items()
    )


def _bounces(settings, mode: Mode) -> str:

    return f"{poll_bounce_mailbox(settings)} bounces and complaints recorded"


def _delete_before(model, column, cutoff: datetime, *extra) -> int:
    """Delete in batches so a million old rows never lock a table for long."""
    table = model.__table__
    total = 0
    while True:
        with get_engine().begin() as conn:
            ids = (
                conn.execute(select(table.c.id).where(column < cutoff, *extra).limit(RETENTION_BATCH))
                .scalars()
                .all()
            )
            if not ids:
                return total
            conn.execute(delete(table).where(table.c.id.in_(ids)))
        total += len(ids)


def retention(settings, now: datetime | None = None) -> dict[str, int]:
    """Delete events, webhook replay tokens, API Idempotency-Keys after a day, audit entries, outbox mail, transactional mail
    that is done with and job records older than NEWSLETTER_RETENTION_DAYS
    (periodic job records after two days), subscribe requests whose
    confirmation links have expired, and login throttles a day after their
    client's last attempt."""
    now = now or clock.now()
    cutoff = now - timedelta(days=settings.retention_days)
    jr = JobRun.__table__.c
    links_expired = now - timedelta(days=settings.token_max_age_days + 1)
    with get_engine().begin() as conn:
        throttles = conn.execute(
            delete(LoginThrottle.__table__).where(LoginThrottle.__table__.c.updated_at < now - THROTTLE_KEEP)
        ).rowcount
    return {
        "subscribe_requests": _delete_before(
            SubscribeRequest, SubscribeRequest.__table__.c.created_at, links_expired
        ),
        "login_throttles": throttles,
        "events": _delete_before(Event, Event.__table__.c.created_at, cutoff),
        "webhook_replays": _delete_before(WebhookReplay, WebhookReplay.__table__.c.created_at, cutoff),
        "outbox": _delete_before(OutboxMessage, OutboxMessage.__table__.c.created_at, cutoff),
        "transactional_mail": _delete_before(
            TransactionalMail,
            TransactionalMail.__table__.c.created_at,
            cutoff,
            TransactionalMail.__table__.c.status.in_(("sent", "failed", "skipped")),
        ),
        "idempotency_keys": _delete_before(
            IdempotencyRecord, IdempotencyRecord.__table__.c.created_at, now - IDEMPOTENCY_KEEP
        ),
        "audit_entries": _delete_before(AuditEntry, AuditEntry.__table__.c.at, cutoff),
        "job_runs": _delete_before(JobRun, jr.created_at, cutoff)
        + _delete_before(JobRun, jr.created_at, now - HOUSEKEEPING_KEEP, jr.job.not_in(WEEKLY_JOBS)),
    }


def _retention(settings, mode: Mode) -> str:
    return ", ".join(f"{count} {name}" for name, count in retention(settings).items()) + " deleted"


@dataclass(frozen=True)
class Periodic:
    name: str
    description: str
    run: object

    def period(self, settings) -> timedelta | None:
        """None when the job is off."""
        if self.name == "resume":
            return timedelta(seconds=max(30, min(300, settings.scheduler_lock_seconds * 2)))
        if self.name == "feeds":
            return timedelta(minutes=max(1, settings.feed_poll_minutes)) if settings.feeds else None
        if self.name == "bounces":
            return (
                timedelta(minutes=max(1, settings.bounce_poll_minutes)) if settings.bounce_mailbox else None
            )
        return timedelta(days=1)


PERIODIC = (
    Periodic("resume", "reclaim expired leases, resume unfinished sends", _resume),
    Periodic("feeds", "poll NEWSLETTER_FEEDS", _feeds),
    Periodic("bounces", "poll NEWSLETTER_BOUNCE_MAILBOX", _bounces),
    Periodic("retention", "delete rows older than NEWSLETTER_RETENTION_DAYS", _retention),
)


def period_start(now: datetime, period: timedelta) -> datetime:
    seconds = int(period.total_seconds())
    return datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, UTC)


def housekeeping(
    settings, *, now: datetime | None = None, mode: Mode = Mode(), only: tuple[str, ...] = ()
) -> list[str]:
    """Run each periodic job whose current period has not been claimed yet."""
    now = now or clock.now()
    actions: list[str] = []
    for job in PERIODIC:
        period = job.period(settings)
        if period is None or (only and job.name not in only):
            continue
        start = period_start(now, period)
        if not runs.claim(job.name, start):
            continue
        try:
            detail = job.run(settings, mode)
            runs.move(job.name, start, expect="started", state="done", detail=detail)
            actions.append(f"{job.name}: {detail}")
        except Exception as exc:  # noqa: BLE001 - one failing job never stops the others
            log.exception("scheduler job %s failed", job.name)
            runs.move(
                job.name, start, expect="started", state="failed", detail=f"{exc.__class__.__name__}: {exc}"
            )
            actions.append(f"{job.name}: failed ({exc.__class__.__name__})")
    for line in actions:
        log.info("scheduler: %s", line)
    return actions
