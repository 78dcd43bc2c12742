"""Fan-out: one ``INSERT … SELECT`` creates a pending delivery row for every
active, unsuppressed reader of an issue. No Python loop over readers.

``ON CONFLICT DO NOTHING`` on the unique (issue, subscriber) pair makes it
safe to run again. The delivery table is shaped for this statement (no
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

from sqlalchemy import Column, MetaData, String, Table, exists, func, literal, select, text
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

# Local-time delivery's waves during one fan-out: a temporary table (per
# connection, gone with the transaction), so the join is a primary-key lookup.
WAVES = Table(
    "fanout_waves",
    MetaData(),
    Column("stored", String(64), primary_key=True),
    Column("zone", String(64), nullable=False),
    Column("due", Delivery.__table__.c.next_attempt_at.type, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)

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


def fan_out(session, issue_id: int, waves: list[Wave] | None = None, *, home: Wave | None = None) -> int:
    """A pending row per reader of ``audience()``; returns how many were added.

    Without ``waves`` every row is due now. With them (local-time delivery,
    ``localtime.waves``) each row's ``next_attempt_at`` ("not before") is its
    reader's zone's moment and ``timezone`` the zone it is sent in: the same
    one statement, its readers joined to the waves (a temporary table with
    one row per stored zone, looked up by its primary key), never a Python
    loop over readers. A reader whose zone has no wave (one who subscribed
    with a new zone as the fan-out began) gets ``home``, the newsletter's
    own zone's wave."""
    now = clock.now()
    hold_for_fan_out(session)
    connection = session.connection()
    if is_sqlite():  # a million index insertions: give SQLite's page cache room (32 MB) for this statement
        connection.exec_driver_sql("PRAGMA cache_size = -32768")
    try:
        if waves:
            if home is None:
                raise ValueError("fan_out with waves needs the home wave (localtime.home)")
            WAVES.create(connection)  # (PostgreSQL drops it at commit or rollback)
            connection.execute(
                WAVES.insert(), [{"stored": w.stored, "zone": w.zone, "due": w.due} for w in waves]
            )
        try:
            inserted = connection.execute(_statement(issue_id, now, home if waves else None)).rowcount
        finally:
            if waves and is_sqlite():
                WAVES.drop(connection)
    finally:
        if is_sqlite():
            connection.exec_driver_sql("PRAGMA cache_size = -2000")
    if inserted is None or inserted < 0:  # some drivers do not report it for INSERT … SELECT
        before = inserted
        inserted = session.execute(
            select(func.count()).where(deliveries.c.issue_id == issue_id, deliveries.c.updated_at == now)
        ).scalar()
        log.debug("rowcount %s; counted %s", before, inserted)
    return inserted


def _statement(issue_id: int, now, home: Wave | None):
    """The INSERT … SELECT of the audience (joined to ``WAVES`` with a ``home`` wave)."""
    columns = list(_COLUMNS)
    due = literal(now, deliveries.c.next_attempt_at.type)
    source = readers
    extra = []
    if home is not None:
        source = readers.outerjoin(WAVES, WAVES.c.stored == readers.c.timezone)
        due = func.coalesce(WAVES.c.due, literal(home.due, deliveries.c.next_attempt_at.type))
        columns.append("timezone")
        extra.append(func.coalesce(WAVES.c.zone, literal(home.zone, deliveries.c.timezone.type)))
    rows = (
        select(
            literal(issue_id),
            readers.c.id,
            readers.c.email,
            readers.c.topics,
            literal("pending"),
            literal(0),
            due,
            literal(""),
            literal(now, deliveries.c.updated_at.type),
            *extra,
        )
        .select_from(source)
        .where(audience())
    )
    insert = sqlite.insert if is_sqlite() else postgresql.insert
    return (
        insert(deliveries)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
