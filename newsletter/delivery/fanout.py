"""Fan-out: one ``INSERT … SELECT`` creates a pending delivery row for every
active, unsuppressed reader of an issue. No Python loop over readers.

It is safe to run again: when the issue already has rows (and for every
wave of a local-time send), ``ON CONFLICT DO NOTHING`` on the unique
(issue, subscriber) pair leaves out the readers who have one. The first
fan-out of an issue, the one ``send.start_send`` makes, goes without it.
The delivery table is shaped for this statement (no
foreign keys, three indexes written per row; see ``models.Delivery``).

Fan-out and erasure exclude each other (PostgreSQL). Without foreign keys,
a reader erased *while* a fan-out runs could be left with a delivery row
(their address) created by that fan-out. The fan-out holds a shared
transaction-level advisory lock; erasure takes it exclusively before
deleting the reader's rows, so it waits for a running fan-out to commit and
then sees (and deletes) its rows, and a fan-out that starts later waits for
the erasure and no longer sees the reader. SQLite already serialises
writing transactions, so the locks do nothing there.
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, func, insert, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite

from newsletter import clock
from newsletter.db import is_sqlite
from newsletter.delivery.localtime import Wave
from newsletter.models import Delivery, Subscriber, Suppression

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
readers = Subscriber.__table__
suppressions = Suppression.__table__

# A fixed key for pg_advisory_xact_lock (the scheduler uses its own, derived from another name).
FAN_OUT_LOCK_KEY = 0x5349474E414C_0F01  # "SIGNAL" fan-out/erase

_COLUMNS = [
    "issue_id",
    "subscriber_id",
    "email",
    "topics",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "updated_at",
]


def _postgresql(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def hold_for_fan_out(session) -> None:
    """Shared lock until the end of the fan-out's transaction."""
    if _postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": FAN_OUT_LOCK_KEY})


def wait_for_fan_outs(session) -> None:
    """Exclusive lock until the end of the erasing transaction: waits for running fan-outs."""
    if _postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FAN_OUT_LOCK_KEY})


def audience():
    """The readers an issue goes to: active and not suppressed (the one definition,
    for the fan-out and for every "send to N readers" count)."""
    return (readers.c.status == "active") & ~exists().where(suppressions.c.email_hash == readers.c.email_hash)


def audience_count(session) -> int:
    return session.execute(select(func.count()).select_from(readers).where(audience())).scalar_one()


def first_readers_end(session, count: int) -> int | None:
    """The id of the ``count``-th reader of ``audience()`` (by id), or None
    when there are no more than ``count`` of them: where a send's first
    transaction stops fanning out (``send.start_send``)."""
    found = (
        session.execute(
            select(readers.c.id).where(audience()).order_by(readers.c.id).offset(count - 1).limit(2)
        )
        .scalars()
        .all()
    )
    return found[0] if len(found) == 2 else None


def last_reader_id(session) -> int:
    return session.execute(select(func.max(readers.c.id))).scalar() or 0


def fan_out(
    session, issue_id: int, waves: list[Wave] | None = None, ids: tuple[int, int] | None = None
) -> int:
    """A pending row per reader of ``audience()``; returns how many were added.
    ``ids``: only the readers whose id is in that range (both ends included),
    a part of a fan-out done in several transactions (``send.complete_fan_out``).

    Without ``waves`` every row is due now (one statement). With them
    (local-time delivery, ``localtime.waves``) it is one statement per
    stored zone, in the waves' order, each taking that zone's readers
    through ``ix_subscriber_timezone_status`` and writing the zone's moment
    as the rows' ``next_attempt_at`` ("not before") and the zone they are
    sent in: a few hundred statements at most, never a Python loop over
    readers. A wave's rows are then stored together, so its claims read
    and write a few pages rather than one in every zone's worth (one
    statement joined to the waves interleaves the zones: its claims cost
    several times as much; docs/performance.md). A reader who subscribes
    during the fan-out with a zone no other reader has is like one who
    subscribes just after it: not in this issue."""
    now = clock.now()
    hold_for_fan_out(session)
    connection = session.connection()
    # A million index insertions: give SQLite's page cache room (32 MB) for this
    # statement. (Not for a part of a fan-out: a part's rows are a few thousand,
    # and the connection goes back to senders that keep their memory small.)
    big = is_sqlite() and ids is None
    if big:
        connection.exec_driver_sql("PRAGMA cache_size = -32768")
    try:
        if waves is None:
            # One statement sees one snapshot, so it can only collide with rows
            # already there; there are none at an issue's start (it never
            # becomes startable again). Without ON CONFLICT PostgreSQL skips a
            # speculative insertion a row: 10–20 % of the statement.
            again = session.execute(select(exists().where(deliveries.c.issue_id == issue_id))).scalar()
            inserted = connection.execute(_statement(issue_id, now, now, again=again, ids=ids)).rowcount
        else:
            # Each wave's statement sees the readers as they are then: one whose
            # zone changed between two waves is found twice, and kept once.
            inserted = 0
            for wave in waves:
                added = connection.execute(_statement(issue_id, now, wave.due, wave, again=True)).rowcount
                inserted = None if added is None or added < 0 or inserted is None else inserted + added
    finally:
        if big:
            connection.exec_driver_sql("PRAGMA cache_size = -2000")
    if inserted is None or inserted < 0:  # some drivers do not report it for INSERT … SELECT
        before = inserted
        inserted = session.execute(
            select(func.count()).where(deliveries.c.issue_id == issue_id, deliveries.c.updated_at == now)
        ).scalar()
        log.debug("rowcount %s; counted %s", before, inserted)
    return inserted


def _statement(issue_id: int, now, due, wave: Wave | None = None, *, again: bool, ids=None):
    """INSERT … SELECT of the audience (of one stored zone, for a wave; of
    the readers whose id is in ``ids``); ``again``: rows of the issue may
    exist, and a reader who has one is left out."""
    columns = list(_COLUMNS)
    values = [
        literal(issue_id),
        readers.c.id,
        readers.c.email,
        readers.c.topics,
        literal("pending"),
        literal(0),
        literal(due, deliveries.c.next_attempt_at.type),
        literal(""),
        literal(now, deliveries.c.updated_at.type),
    ]
    where = audience()
    if ids is not None:
        where = where & readers.c.id.between(*ids)
    if wave is not None:
        columns.append("timezone")
        values.append(literal(wave.zone, deliveries.c.timezone.type))
        where = where & (readers.c.timezone == wave.stored)
    if not again:
        return insert(deliveries).from_select(columns, select(*values).where(where))
    upsert = sqlite.insert if is_sqlite() else postgresql.insert
    return (
        upsert(deliveries)
        .from_select(columns, select(*values).where(where))
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
