"""Fan-out and erasure exclude each other (PostgreSQL).

The delivery table has no foreign keys (they were most of the fan-out's
time; see ``models.Delivery``). What they guaranteed in one corner case is
kept here: a reader erased *while* a fan-out runs must not be left with a
delivery row (their address) created by that fan-out. The fan-out holds a
shared transaction-level advisory lock; erasure takes it exclusively before
deleting the reader's rows, so it waits for a running fan-out to commit and
then sees (and deletes) its rows, and a fan-out that starts later waits for
the erasure and no longer sees the reader. SQLite already serialises
writing transactions, so both functions do nothing there.
"""

from __future__ import annotations

from sqlalchemy import text

# A fixed key for pg_advisory_xact_lock (the scheduler uses its own, derived from another name).
FAN_OUT_LOCK_KEY = 0x5349474E414C_0F01  # "SIGNAL" fan-out/erase


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
