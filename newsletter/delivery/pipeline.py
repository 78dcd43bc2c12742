"""The sending pipeline: freeze, fan out, dispatch, finish.

1. ``start_send`` turns an approved (or scheduled) issue into ``sending`` with
   one conditional UPDATE — exactly one caller wins — then, in the same
   transaction, freezes the renders and fans out: one ``INSERT … SELECT``
   creates a delivery row for every active, unsuppressed subscriber (``ON
   CONFLICT DO NOTHING`` on the unique (issue, subscriber) pair, so running it
   again adds nothing). If anything fails the whole step rolls back.
2. ``dispatch`` claims a batch of due rows with a lease (``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL; SQLite's single writer makes the one UPDATE …
   RETURNING atomic), charges each an attempt, checks the reader is still
   active and unsuppressed (otherwise the row is *skipped* with the reason),
   personalises by substitution into the frozen render, sends the batch and
   records every outcome in one transaction: sent (with the provider's id and
   our Message-ID), retried later (exponential backoff with jitter, honouring
   Retry-After, up to ``max_attempts``), or failed with the reason — a
   permanent refusal also marks the reader bounced and suppresses the address
   through ``feedback.service.record_bounce`` (the one bounce policy).
3. A worker that dies leaves its rows ``sending`` with a lease that expires;
   ``reclaim_expired_leases`` puts them back, so nobody is missed and the only
   possible duplicates are messages that were on the wire at the moment of
   the crash. Leases of live workers are renewed by a heartbeat.
4. ``finish_issue``: when no row is pending or sending the issue becomes
   ``sent`` (conditional UPDATE again) with its counts.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import get_engine, is_sqlite, session_scope
from newsletter.delivery.fanout_guard import hold_for_fan_out
from newsletter.delivery.messages import build_issue_message
from newsletter.delivery.ratelimit import NoLimit, make_limiter
from newsletter.delivery.transports import make_transport
from newsletter.delivery.transports.base import SendResult, TransportError
from newsletter.models import Delivery, Issue, IssueRender, Subscriber, Suppression

log = logging.getLogger(__name__)

D = Delivery.__table__
S = Subscriber.__table__
X = Suppression.__table__
I = Issue.__table__  # noqa: E741

STARTABLE = ("approved", "scheduled")
MAX_BACKOFF = 6 * 3600
OPEN_STATUSES = ("pending", "sending")


class DeliveryError(Exception):
    """Base of the pipeline's refusals (the CLI prints the message)."""


class UnknownIssue(DeliveryError, LookupError):
    pass


class AlreadySending(DeliveryError):
    """Another caller already started (or paused) this issue."""


class NotSendable(DeliveryError):
    """The issue is not in a state that can be sent (draft, sent, cancelled)."""


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    batches: int = 0
    stopped_because: str = ""
    errors: list[str] = field(default_factory=list)

    def add(self, other: DispatchStats) -> None:
        for name in ("claimed", "sent", "failed", "skipped", "retried", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Claimed:
    """One claimed delivery row plus what the batch needs to send it."""

    id: int
    issue_id: int
    subscriber_id: int
    email: str
    topics: str
    attempts: int
    name: str = ""
    issue_number: int | None = None


def worker_name(suffix: str = "") -> str:
    base = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return f"{base}:{suffix}" if suffix else base


# --- queries ----------------------------------------------------------------------


def _get_issue(session, number: int) -> Issue:
    issue = session.scalars(select(Issue).where(Issue.number == number)).first()
    if issue is None:
        raise UnknownIssue(f"there is no issue {number}")
    return issue


def issue_counts(session, issue_id: int) -> dict:
    """Delivery rows of an issue by status, plus ``total``."""
    rows = session.execute(
        select(D.c.status, func.count()).where(D.c.issue_id == issue_id).group_by(D.c.status)
    ).all()
    counts = {status: 0 for status in ("pending", "sending", "sent", "failed", "skipped")}
    for status, count in rows:
        counts[status] = count
    counts["total"] = sum(count for _, count in rows)
    return counts


def _insert(table):
    return (sqlite.insert if is_sqlite() else postgresql.insert)(table)


def fan_out(session, issue_id: int) -> int:
    """One INSERT … SELECT: a pending row per active, unsuppressed subscriber.

    The delivery table is shaped for this statement (no foreign keys, three
    indexes written per row; see ``models.Delivery``). An erasure running at
    the same time is made to wait, or to be waited for (``fanout_guard``)."""
    now = clock.now()
    hold_for_fan_out(session)
    suppressed = exists().where(X.c.email_hash == S.c.email_hash)
    rows = select(
        literal(issue_id),
        S.c.id,
        S.c.email,
        S.c.topics,
        literal("pending"),
        literal(0),
        literal(now, D.c.next_attempt_at.type),
        literal(""),
        literal(now, D.c.updated_at.type),
    ).where(S.c.status == "active", ~suppressed)
    statement = (
        _insert(D)
        .from_select(
            [
                "issue_id",
                "subscriber_id",
                "email",
                "topics",
                "status",
                "attempts",
                "next_attempt_at",
                "last_error",
                "updated_at",
            ],
            rows,
        )
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
    connection = session.connection()
    if is_sqlite():  # a million index insertions: give SQLite's page cache room (32 MB) for this statement
        connection.exec_driver_sql("PRAGMA cache_size = -32768")
    try:
        inserted = connection.execute(statement).rowcount
    finally:
        if is_sqlite():
            connection.exec_driver_sql("PRAGMA cache_size = -2000")
    if inserted is None or inserted < 0:  # some drivers do not report it for INSERT … SELECT
        before = inserted
        inserted = session.execute(
            select(func.count()).where(D.c.issue_id == issue_id, D.c.updated_at == now)
        ).scalar()
        log.debug("rowcount %s; counted %s", before, inserted)
    return inserted


# --- start ------------------------------------------------------------------------


def start_send(settings: Settings, number: int) -> Issue:
    """approved|scheduled → sending (one winner), freeze, fan out; one transaction."""
    from newsletter.rendering.issue import freeze_issue

    with session_scope() as session:
        issue = _get_issue(session, number)
        now = clock.now()
        won = session.execute(
            update(I)
            .where(I.c.id == issue.id, I.c.status.in_(STARTABLE))
            .values(status="sending", send_started_at=now, updated_at=now)
        ).rowcount
        session.refresh(issue)
        if won != 1:
            if issue.status in ("sending", "paused"):
                raise AlreadySending(f"issue {number} is already {issue.status}")
            raise NotSendable(
                f"issue {number} is {issue.status}; only an approved or scheduled issue can be sent"
            )
        freeze_issue(session, issue, settings)
        session.flush()
        fan_out(session, issue.id)
        recipients = session.execute(select(func.count()).where(D.c.issue_id == issue.id)).scalar()
        session.execute(update(I).where(I.c.id == issue.id).values(recipients=recipients))
        session.refresh(issue)
    log.info("issue %s: sending to %s recipients", number, recipients)
    _release_memory()
    return issue


def _release_memory() -> None:
    """Give back what the freeze and the fan-out used (SQLite's enlarged page
    cache, MJML) before a long send: close pooled connections and ask glibc
    to return freed heap to the system, so the sender's RSS stays small."""
    get_engine().dispose()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


# --- leases -----------------------------------------------------------------------


def _sending_issues():
    return select(I.c.id).where(I.c.status == "sending")


def reclaim_expired_leases(settings: Settings, issue_id: int | None = None) -> int:
    """Put rows whose worker stopped renewing its lease back in the queue.
    A row already tried ``max_attempts`` times fails instead (a message that
    kills its worker every time must not loop forever)."""
    now = clock.now()
    scope = D.c.issue_id == issue_id if issue_id is not None else D.c.issue_id.in_(_sending_issues())
    expired = and_(scope, D.c.status == "sending", D.c.lease_until < now)
    with session_scope() as session:
        failed = session.execute(
            update(D)
            .where(expired, D.c.attempts >= settings.max_attempts)
            .values(
                status="failed",
                last_error=f"worker lost during attempt {settings.max_attempts} of {settings.max_attempts}",
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
        back = session.execute(
            update(D)
            .where(expired)
            .values(status="pending", lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now)
        ).rowcount
    if failed or back:
        log.warning("reclaimed %s expired leases (%s failed after max attempts)", back + failed, failed)
    return (back or 0) + (failed or 0)


def lease_seconds(settings: Settings) -> int:
    """How long a claim holds (``NEWSLETTER_SEND_LEASE_SECONDS``); the heartbeat
    renews it every third of that while the worker lives."""
    return max(2, settings.send_lease_seconds)


def renew_leases(settings: Settings, worker_id: str) -> None:
    now = clock.now()
    with session_scope() as session:
        session.execute(
            update(D)
            .where(D.c.issue_id.in_(_sending_issues()), D.c.status == "sending", D.c.lease_owner == worker_id)
            .values(lease_until=now + timedelta(seconds=lease_seconds(settings)))
        )


@lru_cache(maxsize=4)
def _claim_statement(sqlite_dialect: bool, one_issue: bool):
    """UPDATE … RETURNING that leases up to ``:c_size`` due rows (built once:
    constructing it costs more than running it on a small batch)."""
    due = (
        select(D.c.id)
        .where(
            D.c.issue_id == bindparam("c_issue") if one_issue else D.c.issue_id.in_(_sending_issues()),
            D.c.status == "pending",
            D.c.next_attempt_at <= bindparam("c_now", type_=D.c.next_attempt_at.type),
        )
        .order_by(D.c.next_attempt_at)
        .limit(bindparam("c_size"))
    )
    if one_issue:
        due = due.where(D.c.issue_id.in_(_sending_issues()))
    if not sqlite_dialect:
        due = due.with_for_update(skip_locked=True)
    return (
        update(D)
        .where(D.c.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            lease_owner=bindparam("c_worker"),
            lease_until=bindparam("c_lease", type_=D.c.lease_until.type),
            attempts=D.c.attempts + 1,
            updated_at=bindparam("c_now", type_=D.c.updated_at.type),
        )
        .returning(D.c.id, D.c.issue_id, D.c.subscriber_id, D.c.email, D.c.topics, D.c.attempts)
    )


def claim_batch(settings: Settings, worker_id: str, size: int, issue_id: int | None = None) -> list[Claimed]:
    now = clock.now()
    statement = _claim_statement(is_sqlite(), issue_id is not None)
    values = {
        "c_now": now,
        "c_size": size,
        "c_worker": worker_id,
        "c_lease": now + timedelta(seconds=lease_seconds(settings)),
    }
    if issue_id is not None:
        values["c_issue"] = issue_id
    with get_engine().begin() as connection:  # (a Core connection: a third of an ORM session's cost)
        rows = connection.execute(statement, values).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def next_due_in(issue_id: int | None) -> float | None:
    """Seconds until the next pending row of the issue(s) is due; None if none is pending."""
    scope = D.c.issue_id == issue_id if issue_id is not None else D.c.issue_id.in_(_sending_issues())
    with session_scope() as session:
        when = session.execute(
            select(func.min(D.c.next_attempt_at)).where(scope, D.c.status == "pending")
        ).scalar()
    if when is None:
        return None
    if when.tzinfo is None:
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def open_rows(issue_id: int | None) -> bool:
    scope = D.c.issue_id == issue_id if issue_id is not None else D.c.issue_id.in_(_sending_issues())
    with session_scope() as session:
        return (
            session.execute(select(D.c.id).where(scope, D.c.status.in_(OPEN_STATUSES)).limit(1)).first()
            is not None
        )


def issue_status(issue_id: int) -> str | None:
    with session_scope() as session:
        return session.execute(select(I.c.status).where(I.c.id == issue_id)).scalar()


# --- one batch ----------------------------------------------------------------------


def backoff_seconds(settings: Settings, attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter ("equal jitter"), never sooner than Retry-After."""
    base = settings.retry_base_seconds * (2 ** max(0, attempts - 1))
    delay = min(MAX_BACKOFF, base / 2 + random.uniform(0, base / 2))
    return max(delay, retry_after or 0.0)


class _Renders:
    """Frozen renders of the issues being sent, loaded once per worker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.issues: dict[int, tuple[Issue, list[str]]] = {}
        self.renders: dict[tuple[int, str], IssueRender] = {}
        self._lock = threading.Lock()

    def issue(self, issue_id: int) -> tuple[Issue, list[str]]:
        with self._lock:
            found = self.issues.get(issue_id)
            if found is None:
                from newsletter.rendering.issue import issue_sections

                with session_scope() as session:
                    issue = session.get(Issue, issue_id)
                    session.expunge(issue)
                    found = self.issues[issue_id] = (issue, issue_sections(session, issue))
                    for render in session.scalars(
                        select(IssueRender).where(IssueRender.issue_id == issue_id)
                    ):
                        session.expunge(render)
                        self.renders[(issue_id, render.variant)] = render
            return found

    def render(self, issue_id: int, topics: str) -> IssueRender:
        from newsletter.rendering.issue import ensure_variant, variant_for

        issue, sections = self.issue(issue_id)
        variant = variant_for(topics or "", sections)
        render = self.renders.get((issue_id, variant))
        if render is None:
            with self._lock, session_scope() as session:
                render = ensure_variant(session, session.get(Issue, issue_id), variant, self.settings)
                session.flush()
                session.expunge(render)
                self.renders[(issue_id, variant)] = render
        return render


_READERS = (
    select(S.c.id, S.c.status, S.c.name, S.c.email, X.c.reason)
    .select_from(S.outerjoin(X, X.c.email_hash == S.c.email_hash))
    .where(S.c.id.in_(bindparam("ids", expanding=True)))
)


def _eligibility(rows: list[Claimed]) -> dict[int, str]:
    """Reasons to skip rows whose reader left or got suppressed since fan-out;
    fills in names and current addresses of the others."""
    reasons: dict[int, str] = {}
    with get_engine().connect() as connection:
        readers = {r.id: r for r in connection.execute(_READERS, {"ids": [r.subscriber_id for r in rows]})}
    for row in rows:
        reader = readers.get(row.subscriber_id)
        if reader is None:
            reasons[row.id] = "subscriber no longer exists"
        elif reader.status != "active":
            reasons[row.id] = f"subscriber {reader.status} since fan-out"
        elif reader.reason is not None:
            reasons[row.id] = f"address suppressed ({reader.reason})"
        else:
            row.name = reader.name
            row.email = reader.email
    return reasons


_OPEN = or_(D.c.status == "pending", D.c.status == "sending")  # (not IN: executemany cannot expand it)

# Outcomes are written per batch. Sent rows, nearly all of them, go through
# the DB-API's executemany with plain tuples: binding the values a row the
# ORM way cost three times what the database spends updating the row.
# Retries and failures (rare) take the full statement below.
_SENT_SQL = (
    "UPDATE delivery SET status = 'sent', email = {p}, next_attempt_at = NULL, lease_owner = NULL, "
    "lease_until = NULL, message_id = {p}, provider_message_id = {p}, last_error = '', sent_at = {p}, "
    "updated_at = {p} WHERE id = {p} AND status IN ('pending', 'sending')"
)


def _mark_sent(connection, sent: list[tuple], now) -> None:
    """``sent``: (email, message_id, provider_message_id, id) tuples."""
    dialect = connection.dialect
    to_db = D.c.sent_at.type.bind_processor(dialect)  # the column type's own conversion, once a batch
    stamp = to_db(now) if to_db is not None else now
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    rows = [(email, mid, pmid, stamp, stamp, row_id) for email, mid, pmid, row_id in sent]
    connection.exec_driver_sql(_SENT_SQL.format(p=marker), rows)


_RECORD = (
    update(D)
    .where(D.c.id == bindparam("b_id"), _OPEN)
    .values(
        status=bindparam("b_status"),
        email=bindparam("b_email"),
        next_attempt_at=bindparam("b_next", type_=D.c.next_attempt_at.type),
        lease_owner=None,
        lease_until=None,
        message_id=bindparam("b_mid"),
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now", type_=D.c.updated_at.type),
    )
)
_SKIP = (
    update(D)
    .where(D.c.id == bindparam("b_id"), _OPEN)
    .values(
        status="skipped",
        last_error=bindparam("b_error"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_now", type_=D.c.updated_at.type),
    )
)


def _outcome(settings, row: Claimed, result: SendResult, message_id: str | None, now) -> tuple[dict, str]:
    """The row update for one result (a tuple for ``_mark_sent`` or a dict
    for ``_RECORD``), and the stats bucket it counts in."""
    if result.status == "sent":
        pmid = (result.provider_message_id or None) and result.provider_message_id[:300]
        return (row.email, message_id, pmid, row.id), "sent"
    values = {
        "b_id": row.id,
        "b_status": "failed",
        "b_email": row.email,
        "b_next": None,
        "b_mid": message_id,
        "b_error": "",
        "b_now": now,
    }
    error = (result.error or "")[:990]
    if result.status == "transient" and row.attempts < settings.max_attempts:
        delay = backoff_seconds(settings, row.attempts, result.retry_after)
        values.update(b_status="pending", b_next=now + timedelta(seconds=delay), b_error=error)
        return values, "retried"
    if result.status == "transient":
        error = f"gave up after {row.attempts} attempts: {error}"[:990]
    elif result.status == "permanent":
        error = f"bounced: {error}"[:990]
    values.update(b_error=error)
    return values, "failed"


def _release(rows: list[Claimed], *, retry_after: float | None, charge: bool, error: str) -> None:
    """Put a whole batch back in the queue (the transport judged nobody)."""
    now = clock.now()
    delay = retry_after if retry_after is not None else 0.0
    with session_scope() as session:
        session.execute(
            update(D)
            .where(D.c.id == bindparam("b_id"), D.c.status == "sending")
            .values(
                status="pending",
                attempts=bindparam("b_attempts"),
                lease_owner=None,
                lease_until=None,
                next_attempt_at=bindparam("b_next", type_=D.c.next_attempt_at.type),
                last_error=error[:990],
                updated_at=now,
            ),
            [
                {
                    "b_id": r.id,
                    "b_attempts": r.attempts if charge else r.attempts - 1,
                    "b_next": now + timedelta(seconds=delay),
                }
                for r in rows
            ],
        )


def _record(
    settings: Settings, transport_name: str, rows, results, message_ids, skipped: dict[int, str], stats
) -> None:
    from newsletter.feedback.service import record_bounce

    now = clock.now()
    sent, others, bounces = [], [], []
    for row, result in zip(rows, results, strict=True):
        values, bucket = _outcome(settings, row, result, message_ids.get(row.id), now)
        (sent if bucket == "sent" else others).append(values)
        setattr(stats, bucket, getattr(stats, bucket) + 1)
        if result.status == "permanent":
            bounces.append((row, result.error))
    skips = [{"b_id": row_id, "b_error": reason, "b_now": now} for row_id, reason in skipped.items()]
    stats.skipped += len(skips)
    # A plain connection unless a bounce needs the ORM (record_bounce), in the same transaction.
    with session_scope() if bounces else get_engine().begin() as transaction:
        connection = transaction.connection() if bounces else transaction
        if sent:
            _mark_sent(connection, sent, now)
        if others:
            connection.execute(_RECORD, others)
        if skips:
            connection.execute(_SKIP, skips)
        for row, error in bounces:
            delivery = transaction.get(Delivery, row.id)
            record_bounce(
                transaction, settings, delivery=delivery, provider=transport_name, hard=True, detail=error or ""
            )


def process_batch(
    settings: Settings, transport, rows: list[Claimed], renders: _Renders, limiter, stop
) -> DispatchStats:
    """Personalise, send and record one claimed batch."""
    from newsletter.rendering.personalise import personalise

    stats = DispatchStats(claimed=len(rows), batches=1)
    skipped = _eligibility(rows)
    sendable = [r for r in rows if r.id not in skipped]
    messages = []
    failed_render: dict[int, SendResult] = {}
    for row in sendable:
        try:
            issue, _ = renders.issue(row.issue_id)
            row.issue_number = issue.number
            render = renders.render(row.issue_id, row.topics)
            personalised = personalise(
                render, settings, subscriber_id=row.subscriber_id, email=row.email, name=row.name
            )
            messages.append(build_issue_message(settings, personalised, delivery=row, issue=issue))
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the batch
            log.exception("cannot build message for delivery %s", row.id)
            failed_render[row.id] = SendResult("transient", error=f"cannot build the message: {exc}")
            messages.append(None)
    to_send = [m for m in messages if m is not None]
    name = getattr(transport, "name", type(transport).__name__)
    results_by_id: dict[int, SendResult] = dict(failed_render)
    if to_send:
        limiter.acquire(len(to_send), stop)
        try:
            sent_results = transport.send(to_send)
        except TransportError as exc:
            _release(sendable, retry_after=exc.retry_after, charge=False, error=str(exc))
            if skipped:
                _record(settings, name, [], [], {}, skipped, stats)
            stats.claimed -= len(sendable)
            raise
        for message, result in zip(to_send, sent_results, strict=True):
            results_by_id[message.delivery_id] = result
    message_ids = {m.delivery_id: m.message_id for m in to_send}
    _record(settings, name, sendable, [results_by_id[r.id] for r in sendable], message_ids, skipped, stats)
    return stats


# --- dispatch -----------------------------------------------------------------------


class _Heartbeat:
    """Renews this worker's leases while it lives (a thread per worker)."""

    def __init__(self, settings: Settings, worker_id: str, stop: threading.Event):
        self.settings, self.worker_id, self.stop = settings, worker_id, stop
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{worker_id}", daemon=True)

    def _run(self):
        while not (self.done.wait(lease_seconds(self.settings) / 3) or self.stop.is_set()):
            try:
                renew_leases(self.settings, self.worker_id)
            except Exception:  # noqa: BLE001 - a missed renewal only risks a duplicate
                log.exception("lease renewal failed")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()


def batch_size(settings: Settings, transport) -> int:
    size = min(getattr(transport, "max_batch", 100), 500)
    if settings.send_rate:
        size = min(size, max(1, int(settings.send_rate)))  # at most one second's worth per batch
    return max(1, size)


def dispatch(
    settings: Settings,
    *,
    issue_id: int | None = None,
    worker_id: str,
    stop: threading.Event | None = None,
    transport=None,
    limiter=None,
    wait: bool = True,
    on_batch: Callable[[DispatchStats], None] | None = None,
    max_seconds: float | None = None,
) -> DispatchStats:
    """Claim, send and record batches until nothing is left (or ``stop``).

    ``wait=False`` returns as soon as nothing is due now (tests move the
    clock instead of sleeping); ``max_seconds`` bounds one call (worker mode
    re-enqueues itself). Stops claiming when the issue is paused or cancelled.
    """
    stop = stop or threading.Event()
    own_transport = transport is None
    transport = transport or make_transport(settings.transport, settings)
    limiter = limiter or NoLimit()
    renders = _Renders(settings)
    stats = DispatchStats()
    size = batch_size(settings, transport)
    started = time.monotonic()
    failures = 0
    idle_rounds = 0
    try:
        with _Heartbeat(settings, worker_id, stop):
            while not stop.is_set():
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    stats.stopped_because = "time"
                    break
                rows = claim_batch(settings, worker_id, size, issue_id)
                if not rows:
                    if issue_id is not None and issue_status(issue_id) != "sending":
                        stats.stopped_because = issue_status(issue_id) or "gone"
                        break
                    if reclaim_expired_leases(settings, issue_id):
                        continue
                    if not open_rows(issue_id):
                        stats.stopped_because = "done"
                        break
                    due = next_due_in(issue_id)
                    if not wait:
                        stats.stopped_because = "waiting"
                        break
                    # Nothing due: rows retry later or are on the wire in other
                    # threads. Look again soon (a send's last batches finish within
                    # milliseconds), then less and less often, at most once a second.
                    idle_rounds += 1
                    soon = 0.02 * 2 ** min(idle_rounds, 6)
                    stop.wait(max(0.01, min(1.0, soon, due if due is not None else 1.0)))
                    continue
                idle_rounds = 0
                try:
                    batch = process_batch(settings, transport, rows, renders, limiter, stop)
                    failures = 0
                except TransportError as exc:
                    failures += 1
                    stats.errors.append(str(exc))
                    if exc.fatal:
                        pause_issue_by_id(rows[0].issue_id, reason=str(exc))
                        stats.stopped_because = f"paused: {exc}"
                        break
                    pause = exc.retry_after if exc.retry_after is not None else min(60.0, 2.0**failures)
                    log.warning("transport: %s; waiting %.1fs", exc, pause)
                    if not wait:
                        stats.stopped_because = "waiting"
                        break
                    stop.wait(pause)
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug or a database hiccup: give the rows back
                    failures += 1
                    log.exception("batch failed")
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
                    try:
                        _release(
                            rows,
                            retry_after=settings.retry_base_seconds,
                            charge=True,
                            error=f"internal error: {exc}",
                        )
                    except Exception:  # noqa: BLE001 - the lease will expire and reclaim them
                        log.exception("cannot release the batch")
                    if failures >= 5:
                        stats.stopped_because = f"error: {exc}"
                        break
                    stop.wait(min(30.0, 2.0**failures))
                    continue
                stats.add(batch)
                if on_batch is not None:
                    on_batch(batch)
    finally:
        if own_transport:
            transport.close()
    return stats


# --- finish, pause, resume, cancel ------------------------------------------------


def finish_issue(settings: Settings, issue_id: int) -> bool:
    """sending → sent when no row is open; stores the counts. One winner."""
    now = clock.now()
    with session_scope() as session:
        counts = issue_counts(session, issue_id)
        if counts["pending"] or counts["sending"]:
            return False
        done = session.execute(
            update(I)
            .where(
                I.c.id == issue_id,
                I.c.status == "sending",
                ~exists().where(D.c.issue_id == issue_id, D.c.status.in_(OPEN_STATUSES)),
            )
            .values(
                status="sent",
                sent_at=now,
                updated_at=now,
                sent_count=counts["sent"],
                failed_count=counts["failed"],
                skipped_count=counts["skipped"],
            )
        ).rowcount
    return bool(done)


def _store_counts(session, issue_id: int) -> dict:
    counts = issue_counts(session, issue_id)
    session.execute(
        update(I)
        .where(I.c.id == issue_id)
        .values(sent_count=counts["sent"], failed_count=counts["failed"], skipped_count=counts["skipped"])
    )
    return counts


def pause_issue_by_id(issue_id: int, reason: str = "") -> bool:
    now = clock.now()
    with session_scope() as session:
        done = session.execute(
            update(I)
            .where(I.c.id == issue_id, I.c.status == "sending")
            .values(status="paused", updated_at=now)
        ).rowcount
    if done and reason:
        log.error("issue paused: %s", reason)
    return bool(done)


def _transition(number: int, source: tuple[str, ...], target: str) -> Issue:
    with session_scope() as session:
        issue = _get_issue(session, number)
        now = clock.now()
        done = session.execute(
            update(I).where(I.c.id == issue.id, I.c.status.in_(source)).values(status=target, updated_at=now)
        ).rowcount
        session.refresh(issue)
        if not done:
            raise NotSendable(f"issue {number} is {issue.status}, not {' or '.join(source)}")
        return issue


def pause_issue(settings: Settings, number: int) -> Issue:
    """Stop claiming new batches; batches already on the wire finish."""
    return _transition(number, ("sending",), "paused")


def resume_issue(settings: Settings, number: int) -> Issue:
    """paused → sending; the runner (or `issue send N`) continues the queue."""
    return _transition(number, ("paused",), "sending")


def cancel_sending(settings: Settings, number: int) -> Issue:
    """sending|paused → cancelled; every row still pending is skipped with the
    reason (rows on the wire finish and are recorded)."""
    issue = _transition(number, ("sending", "paused"), "cancelled")
    now = clock.now()
    with session_scope() as session:
        session.execute(
            update(D)
            .where(D.c.issue_id == issue.id, D.c.status == "pending")
            .values(status="skipped", last_error="issue cancelled", updated_at=now)
        )
        session.execute(update(I).where(I.c.id == issue.id).values(cancelled_at=now))
        _store_counts(session, issue.id)
    return issue


def resume_unfinished(settings: Settings) -> list[int]:
    """On process start: reclaim expired leases, finish issues whose rows are
    all done, and return the numbers of issues still sending."""
    reclaim_expired_leases(settings)
    with session_scope() as session:
        sending = session.execute(select(I.c.id, I.c.number).where(I.c.status == "sending")).all()
    numbers = []
    for issue_id, number in sending:
        if not finish_issue(settings, issue_id):
            numbers.append(number)
    return numbers


# --- the whole send -------------------------------------------------------------------


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


def issue_id_for(number: int) -> int:
    with session_scope() as session:
        return _get_issue(session, number).id


def counts_for(settings: Settings, number: int) -> IssueCounts:
    with session_scope() as session:
        issue = _get_issue(session, number)
        counts = issue_counts(session, issue.id)
        return IssueCounts(number=number, status=issue.status, **counts)


def run_pool(
    settings: Settings,
    issue_id: int | None,
    *,
    stop: threading.Event | None = None,
    on_batch: Callable[[DispatchStats], None] | None = None,
    transport=None,
    limiter=None,
    wait: bool = True,
) -> DispatchStats:
    """``send_concurrency`` dispatch loops in threads sharing one transport
    (the SMTP pool / HTTP session) and one rate limiter; with
    ``send_processes`` > 1 (and no transport or limiter passed in) the same,
    split over that many processes (``delivery.processes``)."""
    stop = stop or threading.Event()
    if settings.send_processes > 1 and transport is None and limiter is None:
        from newsletter.delivery.processes import run_processes

        return run_processes(settings, issue_id, stop=stop, on_batch=on_batch, wait=wait)
    own = transport is None
    transport = transport or make_transport(settings.transport, settings)
    limiter = limiter or make_limiter(settings)
    total = DispatchStats()
    lock = threading.Lock()

    def counted(batch: DispatchStats) -> None:
        with lock:
            if on_batch is not None:
                on_batch(batch)

    try:
        with ThreadPoolExecutor(max_workers=settings.send_concurrency, thread_name_prefix="sender") as pool:
            futures = [
                pool.submit(
                    dispatch,
                    settings,
                    issue_id=issue_id,
                    worker_id=worker_name(str(n)),
                    stop=stop,
                    transport=transport,
                    limiter=limiter,
                    wait=wait,
                    on_batch=counted,
                )
                for n in range(settings.send_concurrency)
            ]
            try:
                for future in futures:
                    result = future.result()
                    total.add(result)
                    total.errors += result.errors
                    total.stopped_because = total.stopped_because or result.stopped_because
            except BaseException:
                stop.set()  # Ctrl-C or a crash in one loop: let the others finish their batch and stop
                raise
    finally:
        if own:
            transport.close()
    return total


def send_issue(
    settings: Settings,
    number: int,
    *,
    progress: Callable[[IssueCounts, DispatchStats], None] | None = None,
    stop: threading.Event | None = None,
    transport=None,
) -> IssueCounts:
    """Start (or continue) sending an issue and wait until it is done, paused
    or cancelled. Used by `newsletter issue send N` and the scheduler."""
    try:
        issue = start_send(settings, number)
    except AlreadySending:
        with session_scope() as session:
            issue = _get_issue(session, number)
        if issue.status == "paused":
            raise
    reclaim_expired_leases(settings, issue.id)
    start = counts_for(settings, number)
    if progress is not None:
        progress(start, DispatchStats())
    stats = run_pool(
        settings,
        issue.id,
        stop=stop,
        transport=transport,
        on_batch=(lambda batch: progress(start, batch)) if progress is not None else None,
    )
    finish_issue(settings, issue.id)
    final = counts_for(settings, number)
    final.errors = stats.errors
    return final
