"""The delivery queue: claims with a lease, lease renewal and reclaim.

A sender claims a batch of due rows of issues that are ``sending`` with one
``UPDATE … RETURNING`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any
number of senders share the queue; SQLite's single writer makes the one
statement atomic), charging each an attempt. Only rows whose time has
come are claimed: retries wait for their backoff, and in local-time
delivery each reader's row waits for their zone's moment. The lease is renewed by a
heartbeat while the sender lives. A sender that dies leaves its rows
``sending`` with a lease that expires; ``reclaim_expired_leases`` puts them
back, so nobody is missed; before that, what the dead sender's wire journal
says the server had already accepted is recorded as sent (``journal``), so
the only possible duplicates are messages whose server reply had not reached
the sender when it died.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, func, select, update

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import get_engine, is_sqlite, session_scope
from newsletter.delivery import journal
from newsletter.issues import states
from newsletter.models import Delivery, Issue

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
issues = Issue.__table__

OPEN_ROWS = ("pending", "sending")  # delivery rows not yet decided


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


def _sending_issues():
    return select(issues.c.id).where(issues.c.status == states.SENDING)


def issues_in_scope(issue_id: int | None):
    """The issue, or every issue that is sending (``_scope``'s issues)."""
    return issues.c.id == issue_id if issue_id is not None else issues.c.status == states.SENDING


def _scope(issue_id: int | None):
    """Rows of one issue, or of every issue that is sending."""
    if issue_id is not None:
        return deliveries.c.issue_id == issue_id
    return deliveries.c.issue_id.in_(_sending_issues())


# PostgreSQL's planner, left to itself, read the whole delivery table to
# update a batch's rows while the table was small enough (some 150,000 rows)
# that reading it in order looked cheaper than 200 lookups at
# random_page_cost: it hashed every row to join the batch's ids against
# them, for every claim and every record. It did so with the statistics a
# send meets on a fresh table and with accurate ones (docs/performance.md,
# "The thirteenth session"). A send's rows and indexes are in memory, where
# the lookups cost a fraction of the reading, so the claim and the record
# turn sequential scans off for their own transaction. (The heartbeat and
# the reclaim select their rows by lease, few and rarely: not needed there.)
FIND_BY_INDEX = "SET LOCAL enable_seqscan = off"


def find_by_index(connection) -> None:
    """Make the rest of ``connection``'s transaction find delivery rows
    through an index (PostgreSQL; SQLite's planner already does)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(FIND_BY_INDEX)


def lease_seconds(settings: Settings) -> int:
    """How long a claim holds (``NEWSLETTER_SEND_LEASE_SECONDS``); the heartbeat
    renews it every third of that while the sender lives."""
    return max(2, settings.send_lease_seconds)


def reclaim_expired_leases(settings: Settings, issue_id: int | None = None) -> int:
    """Put rows whose sender stopped renewing its lease back in the queue.
    A row already tried ``max_attempts`` times fails instead (a message that
    kills its sender every time must not loop forever). Rows a dead sender's
    journal lists as accepted by the server are recorded as sent first."""
    journal.settle(settings)
    now = clock.now()
    expired = _unlocked(
        and_(_scope(issue_id), deliveries.c.status == "sending", deliveries.c.lease_until < now)
    )
    with session_scope() as session:
        failed = session.execute(
            update(deliveries)
            .where(expired, deliveries.c.attempts >= settings.max_attempts)
            .values(
                status="failed",
                last_error=f"worker lost during attempt {settings.max_attempts} of {settings.max_attempts}",
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
        back = session.execute(
            update(deliveries)
            .where(expired)
            .values(status="pending", lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now)
        ).rowcount
    if failed or back:
        log.warning("reclaimed %s expired leases (%s failed after max attempts)", back + failed, failed)
    return (back or 0) + (failed or 0)


def renew_leases(settings: Settings, worker_id: str) -> None:
    """Extend the leases of the rows ``worker_id`` holds, but for those its
    sender is recording right now (``_unlocked``)."""
    now = clock.now()
    mine = _unlocked(
        and_(_scope(None), deliveries.c.status == "sending", deliveries.c.lease_owner == worker_id)
    )
    with session_scope() as session:
        session.execute(
            update(deliveries)
            .where(mine)
            .values(lease_until=now + timedelta(seconds=lease_seconds(settings)))
        )


def _unlocked(condition):
    """``condition``, less the rows another transaction is writing now
    (PostgreSQL's ``FOR UPDATE SKIP LOCKED``). The lease housekeeping (the
    heartbeat, the reclaim) updates ``sending`` rows while their sender may
    be recording them, in its own order: waiting for such a row while
    holding another was a deadlock, and a row being recorded is leaving
    ``sending`` anyway. (SQLite has one writer at a time: nothing to skip.)"""
    if is_sqlite():
        return condition
    rows = select(deliveries.c.id).where(condition).with_for_update(skip_locked=True)
    return deliveries.c.id.in_(rows.scalar_subquery())


class Heartbeat:
    """Renews a sender's leases while it lives (a thread per sender)."""

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


@lru_cache(maxsize=4)
def _claim_statement(sqlite_dialect: bool, one_issue: bool):
    """UPDATE … RETURNING that leases up to ``:c_size`` due rows (built once:
    constructing it costs more than running it on a small batch).

    "Due" is ``next_attempt_at <= now``, and that is also how local-time
    delivery's "not before" works: the fan-out writes each row's moment (the
    slot's wall-clock time in the reader's zone) as its first
    ``next_attempt_at``, and a row is only ever put back later than it was
    due (a retry's backoff, a reclaimed lease), so no separate condition is
    needed. The statement keeps its shape, and ``ix_delivery_claim``
    (issue_id, status, next_attempt_at) on both databases reads only the due
    rows, in order: the rows of later waves are never visited. The cost
    against a send without waves is in docs/performance.md
    ("Local-time delivery")."""
    due = (
        select(deliveries.c.id)
        .where(
            deliveries.c.issue_id == bindparam("c_issue") if one_issue else _scope(None),
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= bindparam("c_now", type_=deliveries.c.next_attempt_at.type),
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(bindparam("c_size"))
    )
    if one_issue:
        due = due.where(_scope(None))
    if not sqlite_dialect:
        due = due.with_for_update(skip_locked=True)
    return (
        update(deliveries)
        .where(deliveries.c.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            lease_owner=bindparam("c_worker"),
            lease_until=bindparam("c_lease", type_=deliveries.c.lease_until.type),
            attempts=deliveries.c.attempts + 1,
            updated_at=bindparam("c_now", type_=deliveries.c.updated_at.type),
        )
        .returning(
            deliveries.c.id,
            deliveries.c.issue_id,
            deliveries.c.subscriber_id,
            deliveries.c.email,
            deliveries.c.topics,
            deliveries.c.attempts,
        )
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
        find_by_index(connection)
        rows = connection.execute(statement, values).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def next_due_in(issue_id: int | None) -> float | None:
    """Seconds until the next pending row of the issue(s) is due; None if none is pending."""
    with session_scope() as session:
        when = session.execute(
            select(func.min(deliveries.c.next_attempt_at)).where(
                _scope(issue_id), deliveries.c.status == "pending"
            )
        ).scalar()
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


_work = threading.Condition()
_generation = 0


def announce_work() -> None:
    """Wake this process's idle senders: a send started or resumed here
    (another process's is seen at the sender's next look at the database)."""
    global _generation
    with _work:
        _generation += 1
        _work.notify_all()


def idle(stop: threading.Event, seconds: float) -> None:
    """Sleep up to ``seconds``; wake early on ``stop`` or ``announce_work``
    (both noticed within a second; the database is not touched meanwhile)."""
    deadline = time.monotonic() + seconds
    seen = _generation
    while not stop.is_set() and _generation == seen:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with _work:
            _work.wait(min(left, 1.0))


def in_flight(issue_id: int | None) -> bool:
    """True while a row of the issue(s) is claimed by some sender."""
    with session_scope() as session:
        found = session.execute(
            select(deliveries.c.id).where(_scope(issue_id), deliveries.c.status == "sending").limit(1)
        ).first()
    return found is not None


def open_rows(issue_id: int | None) -> bool:
    """True while the issue(s) have rows to send, or rows still to come: a
    fan-out that goes on behind the send (``send.complete_fan_out``), so
    the senders that emptied the queue wait for its next part, not finish."""
    rows = select(deliveries.c.id).where(_scope(issue_id), deliveries.c.status.in_(OPEN_ROWS)).limit(1)
    fanning_out = (
        select(issues.c.id).where(issues_in_scope(issue_id), issues.c.fanning_out_until.isnot(None)).limit(1)
    )
    with session_scope() as session:
        return session.execute(rows).first() is not None or session.execute(fanning_out).first() is not None


def issue_status(issue_id: int) -> str | None:
    with session_scope() as session:
        return session.execute(select(issues.c.status).where(issues.c.id == issue_id)).scalar()
