"""JobRun rows: the scheduler's memory of what it did for each slot.

``(job, slot_at)`` is unique, so ``claim`` — an INSERT — has exactly one
winner however many processes try; a slot's work is started once. State
changes are conditional UPDATEs on the state the caller saw, for the same
reason.

States: ``started`` (being run, or orphaned by a process that died) ·
``done`` · ``skipped`` (a missed slot, never run) · ``waiting`` (the issue
awaits an editor's approval) · ``empty`` (nothing to assemble yet) ·
``failed`` (retried while the slot is within its grace period) ·
``expired`` (the grace period ended while waiting or failing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter import clock
from newsletter.db import get_engine
from newsletter.models import JobRun

T = JobRun.__table__
OPEN_STATES = ("started", "waiting", "empty", "failed")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def get(job: str, slot_at: datetime) -> JobRun | None:
    with get_engine().connect() as conn:
        row = conn.execute(select(T).where(T.c.job == job, T.c.slot_at == slot_at)).mappings().first()
    return JobRun(**row) if row else None


def claim(job: str, slot_at: datetime, *, state: str = "started", detail: str = "") -> bool:
    """Insert the row for (job, slot); False if it already exists."""
    now = clock.now()
    try:
        with get_engine().begin() as conn:
            conn.execute(
                insert(T).values(
                    job=job,
                    slot_at=slot_at,
                    state=state,
                    detail=detail[:1000],
                    created_at=now,
                    finished_at=None if state == "started" else now,
                )
            )
    except IntegrityError:
        return False
    return True


def move(
    job: str,
    slot_at: datetime,
    *,
    expect: str,
    state: str,
    detail: str | None = None,
    then: Callable[[Connection], object] | None = None,
) -> bool:
    """Change the state if it is still ``expect``; True for the one caller that
    did. ``then(connection)`` runs in the same transaction when it did (the
    notice that reports the change: both commit or neither)."""
    values: dict = {"state": state, "finished_at": None if state == "started" else clock.now()}
    if detail is not None:
        values["detail"] = detail[:1000]
    with get_engine().begin() as conn:
        changed = conn.execute(
            update(T).where(T.c.job == job, T.c.slot_at == slot_at, T.c.state == expect).values(**values)
        ).rowcount
        if changed == 1 and then is not None:
            then(conn)
    return changed == 1


def latest_slot(job: str) -> datetime | None:
    with get_engine().connect() as conn:
        return _aware(conn.execute(select(func.max(T.c.slot_at)).where(T.c.job == job)).scalar())


def open_runs(job: str) -> list[JobRun]:
    with get_engine().connect() as conn:
        rows = (
            conn.execute(select(T).where(T.c.job == job, T.c.state.in_(OPEN_STATES)).order_by(T.c.slot_at))
            .mappings()
            .all()
        )
    return [JobRun(**row) for row in rows]


def last_run(job: str) -> JobRun | None:
    with get_engine().connect() as conn:
        row = (
            conn.execute(select(T).where(T.c.job == job).order_by(T.c.slot_at.desc()).limit(1))
            .mappings()
            .first()
        )
    return JobRun(**row) if row else None


def runs(job: str | None = None, limit: int = 100) -> list[JobRun]:
    query = select(T).order_by(T.c.slot_at.desc(), T.c.id.desc()).limit(limit)
    if job:
        query = query.where(T.c.job == job)
    with get_engine().connect() as conn:
        return [JobRun(**row) for row in conn.execute(query).mappings().all()]
