"""One claimed batch: check, personalise, send, record.

Each row's reader is looked up again (a reader who left or was suppressed
since the fan-out is skipped with the reason), the message is made by
substituting the reader's values into the frozen render of their variant
(no re-rendering), the batch goes to the transport in one call, and every
outcome is recorded (``outcomes``). A row whose message cannot be built
fails alone; a transport that cannot judge the batch gets it released.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import ARRAY, Integer, any_, bindparam, select

from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.delivery import outcomes
from newsletter.delivery.messages import build_issue_message
from newsletter.delivery.queue import Claimed
from newsletter.delivery.transports.base import SendResult, TransportError
from newsletter.models import Issue, IssueRender, Subscriber, Suppression
from newsletter.rendering.issue import ensure_variant, issue_sections, variant_for
from newsletter.rendering.personalise import personalise, prepare

log = logging.getLogger(__name__)

readers = Subscriber.__table__
suppressions = Suppression.__table__


@dataclass
class DispatchStats:
    """What one batch, one sender or a whole pool did."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    batches: int = 0
    stopped_because: str = ""
    errors: list[str] = field(default_factory=list)
    wake_in: float | None = None  # "waiting": seconds until the next row is due (the next wave)

    def add(self, other: DispatchStats) -> None:
        for name in ("claimed", "sent", "failed", "skipped", "retried", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Renders:
    """Frozen renders of the issues being sent, loaded once per sender."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.issues: dict[int, tuple[Issue, list[str]]] = {}
        self.renders: dict[tuple[int, str], IssueRender] = {}
        self._lock = threading.Lock()

    @classmethod
    def prepared(cls, settings: Settings, issue_id: int) -> Renders:
        """The issue's renders loaded and split for substitution, once, in the
        process that is about to fork its senders: forked children inherit
        them and never read or prepare them again (``processes``)."""
        renders = cls(settings)
        renders.issue(issue_id)
        for (_, _variant), render in renders.renders.items():
            prepare(render, settings)
        return renders

    def issue(self, issue_id: int) -> tuple[Issue, list[str]]:
        with self._lock:
            found = self.issues.get(issue_id)
            if found is None:
                found = self.issues[issue_id] = self._load(issue_id)
            return found

    def _load(self, issue_id: int) -> tuple[Issue, list[str]]:
        """The issue, its sections and every frozen render, from the database."""
        with session_scope() as session:
            issue = session.get(Issue, issue_id)
            session.expunge(issue)
            found = (issue, issue_sections(session, issue))
            for render in session.scalars(select(IssueRender).where(IssueRender.issue_id == issue_id)):
                session.expunge(render)
                self.renders[(issue_id, render.variant)] = render
        return found

    def render(self, issue_id: int, topics: str) -> IssueRender:
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


_READERS = select(
    readers.c.id, readers.c.status, readers.c.name, readers.c.email, suppressions.c.reason
).select_from(readers.outerjoin(suppressions, suppressions.c.email_hash == readers.c.email_hash))
# The batch's reader ids: one array on PostgreSQL (one parameter, the same
# statement every batch), an expanded IN list on SQLite, which has no arrays.
_READERS_BY_ARRAY = _READERS.where(readers.c.id == any_(bindparam("ids", type_=ARRAY(Integer))))
_READERS_BY_LIST = _READERS.where(readers.c.id.in_(bindparam("ids", expanding=True)))


def eligibility(rows: list[Claimed]) -> dict[int, str]:
    """Reasons to skip rows whose reader left or got suppressed since fan-out;
    fills in names and current addresses of the others."""
    reasons: dict[int, str] = {}
    engine = get_engine()
    statement = _READERS_BY_ARRAY if engine.dialect.name == "postgresql" else _READERS_BY_LIST
    with engine.connect() as connection:
        found = {r.id: r for r in connection.execute(statement, {"ids": [r.subscriber_id for r in rows]})}
    for row in rows:
        reader = found.get(row.subscriber_id)
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


def process_batch(
    settings: Settings, transport, rows: list[Claimed], renders: Renders, limiter, stop, journal=None
) -> DispatchStats:
    """Personalise, send and record one claimed batch. ``journal`` (the
    sender's ``delivery.journal.Journal``) notes each message the moment the
    server takes it, and is emptied once the batch's outcomes are committed."""
    stats = DispatchStats(claimed=len(rows), batches=1)
    skipped = eligibility(rows)
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
            sent_results = transport.send(to_send, accepted=journal.accepted if journal else None)
        except TransportError as exc:
            outcomes.release(sendable, retry_after=exc.retry_after, charge=False, error=str(exc))
            if skipped:
                outcomes.record(settings, name, [], [], {}, skipped, stats)
            if journal:
                journal.clear()
            stats.claimed -= len(sendable)
            raise
        for message, result in zip(to_send, sent_results, strict=True):
            results_by_id[message.delivery_id] = result
    message_ids = {m.delivery_id: m.message_id for m in to_send}
    outcomes.record(
        settings, name, sendable, [results_by_id[r.id] for r in sendable], message_ids, skipped, stats
    )
    if journal:
        journal.clear()
    return stats
