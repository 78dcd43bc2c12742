"""Recording what happened to each claimed row, in one transaction a batch.

- sent: the provider's id and our Message-ID;
- transient failure: back to pending after an exponential backoff with
  jitter (never sooner than the provider's Retry-After), up to
  ``max_attempts``, then failed with the reason;
- permanent failure: failed, and the reader marked bounced and the address
  suppressed through ``feedback.service.record_bounce`` (the one bounce
  policy);
- skipped: the reader left or was suppressed since the fan-out;
- released: the transport could not judge the batch at all, so it goes back
  to the queue (charged an attempt only when the fault was ours).
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import bindparam, or_, update

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.delivery.queue import OPEN_ROWS, Claimed, find_by_index
from newsletter.delivery.transports.base import SendResult
from newsletter.feedback.service import record_bounce
from newsletter.models import DELIVERY_STATUSES, Delivery

deliveries = Delivery.__table__

MAX_BACKOFF = 6 * 3600
_OPEN = or_(
    deliveries.c.status == "pending", deliveries.c.status == "sending"
)  # (not IN: executemany cannot expand it)


def backoff_seconds(settings: Settings, attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter ("equal jitter"), never sooner than Retry-After."""
    base = settings.retry_base_seconds * (2 ** max(0, attempts - 1))
    delay = min(MAX_BACKOFF, base / 2 + random.uniform(0, base / 2))
    return max(delay, retry_after or 0.0)


# Sent rows, nearly all of them, go through the DB-API's executemany with
# plain tuples: binding the values a row the ORM way cost three times what
# the database spends updating the row. Retries and failures (rare) take the
# full statement below.
_SENT_SQL = (
    "UPDATE delivery SET status = 'sent', email = {p}, next_attempt_at = NULL, lease_owner = NULL, "
    "lease_until = NULL, message_id = {p}, provider_message_id = {p}, last_error = '', sent_at = {p}, "
    "updated_at = {p} WHERE id = {p} AND status IN ('pending', 'sending')"
)


# PostgreSQL: one statement for the whole batch, the values as arrays. Fifty
# single-row UPDATEs (even pipelined) cost the server fifty executions: 8.7
# against 2.x ms a batch of 50 (docs/performance.md).
#
# "Still open" is written as "not decided" (NOT IN, which no index can
# serve) so the rows are found by id. Written as IN ('pending', 'sending'),
# the planner, whenever the table's statistics made open rows look rare (a
# fresh send's), read every open row of the send through ix_delivery_claim
# and hash-joined the batch against them: 4.3 against 0.8 ms a batch,
# mid-send at 20,000 readers. (And, as every statement on a batch's rows,
# it runs with sequential scans off: ``queue.find_by_index``.)
_DECIDED = tuple(status for status in DELIVERY_STATUSES if status not in OPEN_ROWS)
_SENT_PG = (
    "UPDATE delivery AS d SET status = 'sent', email = v.email, next_attempt_at = NULL, lease_owner = NULL, "
    "lease_until = NULL, message_id = v.mid, provider_message_id = v.pmid, last_error = '', sent_at = %s, "
    "updated_at = %s FROM unnest(%s::integer[], %s::text[], %s::text[], %s::text[]) AS v(id, email, mid, pmid) "
    f"WHERE d.id = v.id AND d.status NOT IN ({', '.join(repr(status) for status in _DECIDED)})"
)


def _mark_sent(connection, sent: list[tuple], now) -> None:
    """``sent``: (email, message_id, provider_message_id, id) tuples."""
    dialect = connection.dialect
    to_db = deliveries.c.sent_at.type.bind_processor(
        dialect
    )  # the column type's own conversion, once a batch
    stamp = to_db(now) if to_db is not None else now
    if dialect.name == "postgresql":
        emails, mids, pmids, ids = (list(column) for column in zip(*sent, strict=True))
        connection.exec_driver_sql(_SENT_PG, (stamp, stamp, ids, emails, mids, pmids))
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    rows = [(email, mid, pmid, stamp, stamp, row_id) for email, mid, pmid, row_id in sent]
    connection.exec_driver_sql(_SENT_SQL.format(p=marker), rows)


_RECORD = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _OPEN)
    .values(
        status=bindparam("b_status"),
        email=bindparam("b_email"),
        next_attempt_at=bindparam("b_next", type_=deliveries.c.next_attempt_at.type),
        lease_owner=None,
        lease_until=None,
        message_id=bindparam("b_mid"),
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now", type_=deliveries.c.updated_at.type),
    )
)
_SKIP = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _OPEN)
    .values(
        status="skipped",
        last_error=bindparam("b_error"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_now", type_=deliveries.c.updated_at.type),
    )
)


def _outcome(settings: Settings, row: Claimed, result: SendResult, message_id: str | None, now) -> tuple:
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


def release(rows: list[Claimed], *, retry_after: float | None, charge: bool, error: str) -> None:
    """Put a whole batch back in the queue (the transport judged nobody)."""
    now = clock.now()
    delay = retry_after if retry_after is not None else 0.0
    with session_scope() as session:
        session.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"), deliveries.c.status == "sending")
            .values(
                status="pending",
                attempts=bindparam("b_attempts"),
                lease_owner=None,
                lease_until=None,
                next_attempt_at=bindparam("b_next", type_=deliveries.c.next_attempt_at.type),
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


def record(
    settings: Settings, transport_name: str, rows, results, message_ids, skipped: dict[int, str], stats
) -> None:
    """Write every outcome of a batch (and count it in ``stats``) in one transaction."""
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
        find_by_index(connection)
        if sent:
            _mark_sent(connection, sent, now)
        if others:
            connection.execute(_RECORD, others)
        if skips:
            connection.execute(_SKIP, skips)
        for row, error in bounces:
            delivery = transaction.get(Delivery, row.id)
            record_bounce(
                transaction,
                settings,
                delivery=delivery,
                provider=transport_name,
                hard=True,
                detail=error or "",
            )
