"""The single-runner lock: at most one scheduler process acts at a time.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on
a dedicated connection that stays open for the life of the process. The
server drops it the moment that connection dies (process killed, machine
gone), so another scheduler takes over at its next attempt. The holder is
also written to the ``scheduler_lock`` row, only so ``newsletter schedule``
can show who holds it.

SQLite: the ``scheduler_lock`` row *is* the lock. It carries a lease
(``expires_at``) that the holder renews with a heartbeat; anyone may take it
once the lease has run out, with one conditional UPDATE (or the first INSERT),
so two processes never both believe they hold it. A dead holder is replaced
within ``NEWSLETTER_SCHEDULER_LOCK_SECONDS``.

Leases are measured on the wall clock, not ``newsletter.clock``: they are
about whether real processes are alive, and a test that moves the
newsletter's clock forward a week must not hand the lock over. Tests of the
lease itself pass their own ``now``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from newsletter.models import SchedulerLock

log = logging.getLogger("newsletter.scheduler")

LOCK_NAME = "scheduler"
# A fixed 64-bit key for pg_try_advisory_lock, derived from a readable name.
ADVISORY_KEY = zlib.crc32(b"get-the-signal:scheduler")


def wall_now() -> datetime:
    return datetime.now(UTC)


def new_holder_id() -> str:
    """host:pid:random — readable in `newsletter schedule`, unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class RunnerLock:
    """``try_hold()`` is called periodically: it takes the lock if free and
    renews it if held; it returns whether this process may act now."""

    def __init__(
        self,
        engine: Engine,
        *,
        holder: str | None = None,
        lease_seconds: int = 30,
        now: Callable[[], datetime] = wall_now,
    ):
        self.engine = engine
        self.holder = holder or new_holder_id()
        self.lease = timedelta(seconds=lease_seconds)
        self.now = now
        self.held = False

    def try_hold(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def _changed(self, held: bool, *, released: bool = False) -> bool:
        if held and not self.held:
            log.info("scheduler lock acquired by %s", self.holder)
        elif self.held and not held:
            log.log(
                logging.INFO if released else logging.WARNING,
                "scheduler lock %s by %s",
                "released" if released else "lost",
                self.holder,
            )
        self.held = held
        return held


class SqliteLock(RunnerLock):
    """A lease row taken with a conditional UPDATE, or the first INSERT."""

    def try_hold(self) -> bool:
        now = self.now()
        table = SchedulerLock.__table__
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(table)
                    .where(table.c.name == LOCK_NAME)
                    .where((table.c.holder == self.holder) | (table.c.expires_at < now))
                    .values(
                        holder=self.holder,
                        acquired_at=now if not self.held else table.c.acquired_at,
                        heartbeat_at=now,
                        expires_at=now + self.lease,
                    )
                ).rowcount
                if not taken:
                    exists = conn.execute(select(table.c.name).where(table.c.name == LOCK_NAME)).first()
                    if exists is None:
                        conn.execute(
                            insert(table).values(
                                name=LOCK_NAME,
                                holder=self.holder,
                                acquired_at=now,
                                heartbeat_at=now,
                                expires_at=now + self.lease,
                            )
                        )
                        taken = 1
        except IntegrityError:  # another process inserted the row first
            taken = 0
        except OperationalError as exc:  # database busy or gone: act only with a lease in hand
            log.warning("scheduler lock: %s", exc.__class__.__name__)
            taken = 0
        return self._changed(bool(taken))

    def release(self) -> None:
        table = SchedulerLock.__table__
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(table).where(table.c.name == LOCK_NAME).where(table.c.holder == self.holder)
                )
        except OperationalError:
            pass
        self._changed(False, released=True)


class PostgresLock(RunnerLock):
    """pg_try_advisory_lock on a connection kept for the life of the process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._conn = None

    def _connection(self):
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._conn = None

    def try_hold(self) -> bool:
        try:
            conn = self._connection()
            if self.held:
                conn.execute(text("SELECT 1"))  # still connected means still holding
                held = True
            else:
                held = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar()
                )
        except (DBAPIError, OSError) as exc:
            log.warning("scheduler lock connection failed: %s", exc.__class__.__name__)
            self._drop_connection()
            held = False
        if held:
            self._record()
        return self._changed(held)

    def _record(self) -> None:
        """Show the holder in scheduler_lock (display only; the advisory lock decides)."""
        now = self.now()
        table = SchedulerLock.__table__
        values = dict(holder=self.holder, heartbeat_at=now, expires_at=now + self.lease)
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(table)
                    .where(table.c.name == LOCK_NAME)
                    .values(acquired_at=now if not self.held else table.c.acquired_at, **values)
                ).rowcount
                if not done:
                    conn.execute(insert(table).values(name=LOCK_NAME, acquired_at=now, **values))
        except (IntegrityError, OperationalError) as exc:
            log.debug("scheduler lock record: %s", exc)

    def release(self) -> None:
        if self._conn is not None and self.held:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                with self.engine.begin() as conn:
                    table = SchedulerLock.__table__
                    conn.execute(
                        delete(table).where(table.c.name == LOCK_NAME).where(table.c.holder == self.holder)
                    )
            except (DBAPIError, OSError):
                pass
        self._drop_connection()
        self._changed(False, released=True)


def make_lock(
    engine: Engine, *, lease_seconds: int, holder: str | None = None, now: Callable[[], datetime] = wall_now
) -> RunnerLock:
    cls = SqliteLock if engine.dialect.name == "sqlite" else PostgresLock
    return cls(engine, holder=holder, lease_seconds=lease_seconds, now=now)


def lock_state(engine: Engine, now: datetime | None = None) -> dict:
    """What `newsletter schedule` shows: the recorded holder and, on
    PostgreSQL, whether the advisory lock is really held and by which backend."""
    now = now or wall_now()
    table = SchedulerLock.__table__
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.name == LOCK_NAME)).mappings().first()
        state: dict = {
            "kind": "sqlite lease row" if engine.dialect.name == "sqlite" else "postgresql advisory lock"
        }
        if engine.dialect.name != "sqlite":
            pid = conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = :key AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"key": ADVISORY_KEY},
            ).scalar()
            state["backend_pid"] = pid
    if row is None:
        state.update(held=False, holder=None)
        return state
    expires = row["expires_at"]
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    live = expires >= now if engine.dialect.name == "sqlite" else state.get("backend_pid") is not None
    state.update(
        held=live,
        holder=row["holder"],
        acquired_at=row["acquired_at"],
        heartbeat_at=row["heartbeat_at"],
        expires_at=expires,
    )
    return state
