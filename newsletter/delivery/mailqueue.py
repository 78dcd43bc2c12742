"""The sender of transactional mail: the queue that ``transactional.enqueue`` fills.

The same discipline as an issue's delivery rows (``queue``, ``outcomes``),
on its own table so it never touches the issue send's hot path:

- ``claim`` leases due rows with one ``UPDATE … RETURNING`` (``FOR UPDATE
  SKIP LOCKED`` on PostgreSQL), charging each an attempt; a sender that dies
  leaves leases that expire, and ``reclaim_expired`` puts the rows back;
- each mail is checked against the suppression list (and skipped with the
  reason), rendered from its template, and the batch goes to the transport
  named by ``NEWSLETTER_TRANSPORT`` in one call;
- outcomes as for issue mail: sent (with the Message-ID and the provider's
  id), a transient failure back to pending after an exponential backoff with
  jitter up to ``NEWSLETTER_MAX_ATTEMPTS`` and then failed, a permanent one
  failed and — for a reader's mail — the bounce policy
  (``feedback.service.record_bounce``); a transport that cannot be reached
  (the mail server is down) judges nobody: the batch goes back to the queue
  uncharged and is tried again, however long the outage lasts;
- a failed mail stays visible (the editor's mail page, ``newsletter mail
  list``) and ``retry`` queues it again.

``MailSender`` is the thread that drains the queue: ``serve``'s sender, the
standalone ``newsletter scheduler`` and each ``newsletter worker`` run one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache

from sqlalchemy import and_, bindparam, func, select, update

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import get_engine, is_sqlite, session_scope
from newsletter.delivery import transactional, webhooks
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.outcomes import backoff_seconds
from newsletter.delivery.queue import lease_seconds, worker_name
from newsletter.delivery.ratelimit import NoLimit
from newsletter.delivery.transports import SendResult, TransportError, make_transport
from newsletter.feedback.service import record_bounce
from newsletter.models import MAIL_STATUSES, Suppression, TransactionalMail
from newsletter.suppression import email_hash

log = logging.getLogger("newsletter.mail")

mails = TransactionalMail.__table__
suppressions = Suppression.__table__

BATCH = 50
POLL_SECONDS = 1.0  # how often an idle sender looks (a sender in the same process is woken at once)
RECLAIM_EVERY = 30.0
MAX_OUTAGE_WAIT = 60.0  # while the transport is unreachable, look again at least this often


@dataclass
class ClaimedMail:
    id: int
    kind: str
    template: str
    subject: str
    to_email: str
    to_name: str
    subscriber_id: int | None
    context: str
    headers: str
    attempts: int


@dataclass
class MailStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: MailStats) -> None:
        for name in ("sent", "retried", "failed", "skipped", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


# --- claims and leases --------------------------------------------------------------


@lru_cache(maxsize=2)
def _claim_statement(sqlite_dialect: bool):
    due = (
        select(mails.c.id)
        .where(
            mails.c.status == "pending",
            mails.c.next_attempt_at <= bindparam("c_now", type_=mails.c.next_attempt_at.type),
        )
        .order_by(mails.c.next_attempt_at, mails.c.id)
        .limit(bindparam("c_size"))
    )
    if not sqlite_dialect:
        due = due.with_for_update(skip_locked=True)
    return (
        update(mails)
        .where(mails.c.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            lease_owner=bindparam("c_worker"),
            lease_until=bindparam("c_lease", type_=mails.c.lease_until.type),
            attempts=mails.c.attempts + 1,
            updated_at=bindparam("c_now", type_=mails.c.updated_at.type),
        )
        .returning(
            mails.c.id,
            mails.c.kind,
            mails.c.template,
            mails.c.subject,
            mails.c.to_email,
            mails.c.to_name,
            mails.c.subscriber_id,
            mails.c.context,
            mails.c.headers,
            mails.c.attempts,
        )
    )


def claim(settings: Settings, worker_id: str, size: int = BATCH) -> list[ClaimedMail]:
    """Lease up to ``size`` due mails for ``worker_id``."""
    now = clock.now()
    values = {
        "c_now": now,
        "c_size": size,
        "c_worker": worker_id,
        "c_lease": now + timedelta(seconds=lease_seconds(settings)),
    }
    with get_engine().begin() as connection:
        rows = connection.execute(_claim_statement(is_sqlite()), values).all()
    return sorted((ClaimedMail(*row) for row in rows), key=lambda m: m.id)


def reclaim_expired(settings: Settings) -> int:
    """Mails whose sender stopped renewing its lease go back to the queue
    (or fail, after ``max_attempts`` tries that each killed their sender)."""
    now = clock.now()
    expired = and_(mails.c.status == "sending", mails.c.lease_until < now)
    with get_engine().begin() as connection:
        failed = connection.execute(
            update(mails)
            .where(expired, mails.c.attempts >= settings.max_attempts)
            .values(
                status="failed",
                last_error=f"sender lost during attempt {settings.max_attempts} of {settings.max_attempts}",
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
        back = connection.execute(
            update(mails)
            .where(expired)
            .values(status="pending", lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now)
        ).rowcount
    if failed or back:
        log.warning("reclaimed %s transactional mails from a lost sender", (failed or 0) + (back or 0))
    return (failed or 0) + (back or 0)


# --- one batch ------------------------------------------------------------------------


def message_id(settings: Settings, mail_id: int) -> str:
    """The same on every retry of one mail (a receiver can drop a duplicate)."""
    digest = hashlib.sha256(f"{settings.secret_key}|mail|{mail_id}".encode()).hexdigest()[:20]
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<gts.m.{mail_id}.{digest}@{domain}>"


def build_message(settings: Settings, mail: ClaimedMail) -> OutgoingMessage:
    html, text = transactional.render_transactional(settings, mail.template, json.loads(mail.context))
    return OutgoingMessage(
        sender=settings.mail_from,
        to=mail.to_email,
        to_name=mail.to_name,
        subject=mail.subject,
        text=text,
        html=html,
        headers={"Auto-Submitted": "auto-generated", **json.loads(mail.headers)},
        message_id=message_id(settings, mail.id),
        kind="transactional",
        metadata={"mail_id": str(mail.id), "kind": mail.kind},
    )


def _suppressed(rows: list[ClaimedMail]) -> dict[str, str]:
    """Suppression reasons by address hash, for the addresses of ``rows``."""
    hashes = {email_hash(m.to_email) for m in rows}
    with get_engine().connect() as connection:
        found = connection.execute(
            select(suppressions.c.email_hash, suppressions.c.reason).where(
                suppressions.c.email_hash.in_(hashes)
            )
        ).all()
    return dict(found)


def send_batch(settings: Settings, transport, rows: list[ClaimedMail], limiter=None) -> MailStats:
    """Check, render, send and record one claimed batch (webhook rows are
    POSTed by ``webhooks.post`` instead, and recorded alike). Raises
    ``TransportError`` (after giving the rows back) when the transport could
    not judge any of them."""
    stats = MailStats()
    # Webhook deliveries ride the same queue (claims, leases, retries, records); only the last leg differs.
    hooks = [m for m in rows if m.kind == webhooks.KIND]
    results: dict[int, SendResult] = webhooks.post(session_scope, hooks) if hooks else {}
    mail_rows = [m for m in rows if m.kind != webhooks.KIND]
    suppressed = _suppressed(mail_rows) if mail_rows else {}
    skipped: dict[int, str] = {}
    messages: list[tuple[ClaimedMail, OutgoingMessage]] = []
    for mail in mail_rows:
        reason = suppressed.get(email_hash(mail.to_email))
        if reason is not None:
            skipped[mail.id] = f"address suppressed ({reason})"
            continue
        try:
            messages.append((mail, build_message(settings, mail)))
        except Exception as exc:  # noqa: BLE001 - one bad mail must not stop the others
            log.exception("cannot build transactional mail %s", mail.id)
            results[mail.id] = SendResult("rejected", error=f"cannot build the message: {exc}")
    if messages:
        (limiter or NoLimit()).acquire(len(messages))
        try:
            answers = transport.send([m for _, m in messages])
        except TransportError as exc:
            release([mail for mail, _ in messages], exc, settings)
            record(settings, getattr(transport, "name", "transport"), hooks, results, skipped, stats)
            stats.released += len(messages)
            raise
        results.update({mail.id: answer for (mail, _), answer in zip(messages, answers, strict=True)})
    ids = {mail.id: message.message_id for mail, message in messages}
    record(settings, getattr(transport, "name", "transport"), rows, results, skipped, stats, ids)
    return stats


def release(rows: list[ClaimedMail], exc: TransportError, settings: Settings, *, delay: float = 0) -> None:
    """Give a batch back uncharged: the transport judged none of it."""
    now = clock.now()
    wait = max(delay, exc.retry_after or 0.0)
    with get_engine().begin() as connection:
        connection.execute(
            update(mails)
            .where(mails.c.id == bindparam("b_id"), mails.c.status == "sending")
            .values(
                status="pending",
                attempts=bindparam("b_attempts"),
                lease_owner=None,
                lease_until=None,
                next_attempt_at=now + timedelta(seconds=wait),
                last_error=str(exc)[:990],
                updated_at=now,
            ),
            [{"b_id": m.id, "b_attempts": max(0, m.attempts - 1)} for m in rows],
        )


def record(
    settings: Settings,
    transport_name: str,
    rows: list[ClaimedMail],
    results: dict[int, SendResult],
    skipped: dict[int, str],
    stats: MailStats,
    message_ids: dict[int, str] | None = None,
) -> None:
    """Every outcome of a batch in one transaction (with the bounce policy for
    a reader's address that bounced permanently)."""
    now = clock.now()
    message_ids = message_ids or {}
    with session_scope() as session:
        for mail in rows:
            if mail.id in skipped:
                continue
            result = results[mail.id]
            values: dict = {"lease_owner": None, "lease_until": None, "updated_at": now}
            error = (result.error or "")[:990]
            if result.status == "sent":
                stats.sent += 1
                values |= {
                    "status": "sent",
                    "sent_at": now,
                    "message_id": message_ids.get(mail.id),
                    "provider_message_id": (result.provider_message_id or "")[:300] or None,
                    "last_error": "",
                    "context": "{}",  # the reader's links are not kept once they are sent
                }
            elif result.status == "transient" and mail.attempts < settings.max_attempts:
                stats.retried += 1
                delay = backoff_seconds(settings, mail.attempts, result.retry_after)
                values |= {
                    "status": "pending",
                    "next_attempt_at": now + timedelta(seconds=delay),
                    "last_error": error,
                }
            else:
                stats.failed += 1
                if result.status == "transient":
                    error = f"gave up after {mail.attempts} attempts: {error}"
                elif result.status == "permanent":
                    error = f"bounced: {error}"
                values |= {"status": "failed", "last_error": error[:990]}
                if result.status == "permanent" and mail.subscriber_id is not None:
                    record_bounce(
                        session,
                        settings,
                        email=mail.to_email,
                        provider=transport_name,
                        hard=True,
                        detail=error,
                    )
            session.execute(
                update(mails).where(mails.c.id == mail.id, mails.c.status == "sending").values(**values)
            )
        for mail_id, reason in skipped.items():
            stats.skipped += 1
            session.execute(
                update(mails)
                .where(mails.c.id == mail_id, mails.c.status == "sending")
                .values(
                    status="skipped", last_error=reason, lease_owner=None, lease_until=None, updated_at=now
                )
            )


def send_due(
    settings: Settings,
    *,
    transport=None,
    worker_id: str | None = None,
    limiter=None,
    stop: threading.Event | None = None,
) -> MailStats:
    """Send every mail that is due now, batch after batch; returns the totals.
    Raises ``TransportError`` when the transport cannot be reached (the
    batch is back in the queue)."""
    worker_id = worker_id or worker_name("mail")
    total = MailStats()
    own = transport is None
    try:
        while not (stop is not None and stop.is_set()):
            rows = claim(settings, worker_id)
            if not rows:
                break
            if transport is None:
                transport = make_transport(settings.transport, settings)
            total.add(send_batch(settings, transport, rows, limiter))
    finally:
        if own and transport is not None:
            transport.close()
    return total


# --- the thread ---------------------------------------------------------------------


class MailSender:
    """Drains the queue while the process lives: woken at once by mail queued
    in this process, otherwise it looks every ``poll`` seconds. While the
    transport is unreachable it backs off (up to ``MAX_OUTAGE_WAIT``), the
    mails waiting in the queue."""

    def __init__(self, settings: Settings, *, poll: float = POLL_SECONDS, limiter=None):
        self.settings = settings
        self.poll = poll
        self.limiter = limiter
        self.stop = threading.Event()
        self.worker_id = worker_name("mail")
        self.thread = threading.Thread(target=self._run, name="mail-sender", daemon=True)
        self.failures = 0

    def start(self) -> MailSender:
        self.thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        transactional.queued.set()
        self.thread.join(timeout)

    def pass_once(self) -> MailStats:
        """One look at the queue; returns what was sent (the thread's body, and tests')."""
        try:
            stats = send_due(self.settings, worker_id=self.worker_id, limiter=self.limiter, stop=self.stop)
        except TransportError as exc:
            self.failures += 1
            log.warning("transactional mail waits for the transport: %s", exc)
            return MailStats(errors=[str(exc)])
        self.failures = 0
        if stats.sent or stats.failed or stats.retried:
            log.info(
                "transactional mail: %s sent, %s retried, %s failed, %s skipped",
                stats.sent,
                stats.retried,
                stats.failed,
                stats.skipped,
            )
        return stats

    def _run(self) -> None:
        last_reclaim = 0.0
        while not self.stop.is_set():
            transactional.queued.clear()
            try:
                if time.monotonic() - last_reclaim > RECLAIM_EVERY:
                    reclaim_expired(self.settings)
                    last_reclaim = time.monotonic()
                self.pass_once()
            except Exception:  # noqa: BLE001 - a database hiccup: keep the sender alive
                self.failures += 1
                log.exception("transactional mail sender failed; trying again")
            if self.failures:
                # The mail server (or the database) is down: the mail waits in the
                # queue, uncharged; look again less and less often, at most every minute.
                self.stop.wait(min(MAX_OUTAGE_WAIT, 2.0 ** min(self.failures, 6)))
            else:
                transactional.queued.wait(self.poll)


_sender: MailSender | None = None


def start_sender(settings: Settings, *, limiter=None) -> MailSender:
    """Start this process's mail sender (once)."""
    global _sender
    if _sender is None or not _sender.thread.is_alive():
        _sender = MailSender(settings, limiter=limiter).start()
    return _sender


def stop_sender() -> None:
    global _sender
    if _sender is not None:
        _sender.shutdown()
        _sender = None


# --- what the editor and the CLI show and do -----------------------------------------


def counts(session) -> dict[str, int]:
    rows = session.execute(select(mails.c.status, func.count()).group_by(mails.c.status)).all()
    out = dict.fromkeys(MAIL_STATUSES, 0)
    out.update({status: count for status, count in rows})
    return out


def oldest_waiting(session):
    """When the oldest mail still waiting was queued (None if none waits)."""
    return session.execute(
        select(func.min(mails.c.created_at)).where(mails.c.status.in_(("pending", "sending")))
    ).scalar()


def listing(session, *, status: str = "", before: int | None = None, size: int = 50, kind: str = "") -> list:
    """Newest first; ``status`` one of MAIL_STATUSES or "" for all; ``kind`` (such as ``webhook``) or all."""
    stmt = select(
        mails.c.id,
        mails.c.kind,
        mails.c.to_email,
        mails.c.subject,
        mails.c.status,
        mails.c.attempts,
        mails.c.next_attempt_at,
        mails.c.last_error,
        mails.c.created_at,
        mails.c.sent_at,
    ).order_by(mails.c.id.desc())
    if status:
        stmt = stmt.where(mails.c.status == status)
    if kind:
        stmt = stmt.where(mails.c.kind == kind)
    if before:
        stmt = stmt.where(mails.c.id < before)
    return list(session.execute(stmt.limit(size)))


def retry(session, mail_id: int | None = None) -> int:
    """Queue a failed (or skipped) mail again, or every failed one when
    ``mail_id`` is None; returns how many. Attempts start again from zero."""
    now = clock.now()
    where = [mails.c.status.in_(("failed", "skipped")) if mail_id is not None else mails.c.status == "failed"]
    if mail_id is not None:
        where.append(mails.c.id == mail_id)
    changed = session.execute(
        update(mails)
        .where(*where)
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now, last_error="")
    ).rowcount
    if changed:
        transactional.mark_queued(session)
    return changed
