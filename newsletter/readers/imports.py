"""Applying an import to the readers: the rules, one batch per transaction.

The CSV import (``readers.csv_io``) hands batches of readers as the file
describes them; this module decides and writes, with two IN queries to look
a batch up and multi-row INSERTs for the new readers, their history and the
suppression list. The rules:

* a reader the old service had as **opted out** (unsubscribed, bounced,
  complained, blocklisted) comes in not active: a new one is stored as
  unsubscribed, bounced or complained (only the reader can come back, by
  confirming a subscription); a bounce, complaint or blocklisting also puts
  the address on the hashed suppression list. An active reader here is
  made not active too, unless they confirmed here *after* they left there;
* a reader who never confirmed at the old service is not imported (with
  ``pending`` they are sent a confirmation, like everyone else);
* an address on our suppression list, or a reader who unsubscribed here, is
  never made active by an import (the line is refused, with the reason);
* an import never overrides a reader's **own choices** (name, topics) —
  those of a reader who subscribed through the form or the API, confirmed,
  or changed their preferences — unless asked to (``update``); what it
  changes, or would have changed, is reported, and every change is kept in
  the reader's history (an ``import`` event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, insert, or_
from sqlmodel import Session, select

from newsletter import clock
from newsletter.models import Event, Subscriber, Suppression
from newsletter.readers import service
from newsletter.readers.import_formats import ACTIVE, UNCONFIRMED
from newsletter.suppression import email_hash

# What an import line did (the report counts them):
ADDED, UPDATED, UNCHANGED, KEPT = "added", "updated", "unchanged", "kept"
NOT_CONFIRMED = "unconfirmed"  # never confirmed at the old service: not imported
REFUSED_SUPPRESSED = "suppressed"  # on our suppression list: not imported
REFUSED_LEFT = "kept_unsubscribed"  # unsubscribed here: an import does not bring them back
# …and the opted-out statuses themselves: "unsubscribed", "bounced", "complained", "blocklisted"
REFUSED = {
    REFUSED_SUPPRESSED: "address is on the suppression list (erased, bounced or complained); not imported",
    REFUSED_LEFT: "reader has unsubscribed; an import does not subscribe them again",
}
STORED_STATUS = {"unsubscribed": "unsubscribed", "bounced": "bounced", "complained": "complained",
                 "blocklisted": "unsubscribed"}  # fmt: skip
SUPPRESSION_REASON = {"bounced": "hard_bounce", "complained": "complaint", "blocklisted": "blocklisted"}


@dataclass
class Incoming:
    """One validated reader from the file. ``name``/``topics`` None: the file
    says nothing (nothing changes)."""

    email: str
    name: str | None
    topics: str | None
    status: str  # import_formats.STATUSES
    detail: str  # why, for the history ("unsubscribed at Mailchimp")
    consent_at: datetime | None
    left_at: datetime | None
    consent_text: str
    line_no: int = 0
    where: str = ""  # "file:line", for the report
    timezone: str | None = None  # a known IANA zone from an optional timezone column, else None


@dataclass
class Applied:
    incoming: Incoming
    result: str
    change: str = ""  # what changed, or was kept ("name: 'Ann' → 'Ann Smith'")


def _day(moment: datetime | None) -> str:
    return f" on {moment.date().isoformat()}" if moment else ""


def _quoted(value: str) -> str:
    return f"'{value}'" if value else "(none)"


def _topics(value: str) -> str:
    return value.replace(",", ", ") if value else "(all)"


def _differences(sub: Subscriber, c: Incoming) -> list[tuple[str, str, str]]:
    """(field, ours, the file's) for each choice the file would change; an
    empty value in the file changes nothing."""
    found = []
    if c.name and c.name != sub.name:
        found.append(("name", sub.name, c.name))
    if c.topics and c.topics != sub.topics:
        found.append(("topics", sub.topics, c.topics))
    return found


def _describe(differences, *, kept: bool) -> str:
    show = {"name": _quoted, "topics": _topics}
    if kept:
        return "; ".join(
            f"kept the reader's {f} {show[f](ours)} (file: {show[f](theirs)})"
            for f, ours, theirs in differences
        )
    return "; ".join(f"{f}: {show[f](ours)} → {show[f](theirs)}" for f, ours, theirs in differences)


def _own_choices(session: Session, readers: list[Subscriber]) -> set[int]:
    """The readers whose name and topics are their own: they subscribed
    through the form or the API (even if an import activated them since),
    confirmed, or changed their preferences."""
    own = {s.id for s in readers if s.confirmed_at is not None or s.consent_source in ("form", "api")}
    others = [s.id for s in readers if s.id not in own]
    if others:
        themselves = or_(
            Event.kind == "preferences", and_(Event.kind == "subscribe", Event.detail.in_(("form", "api")))
        )
        own.update(
            session.exec(select(Event.subscriber_id).where(themselves, Event.subscriber_id.in_(others))).all()
        )
    return own


class _Batch:
    """The writes of one batch, collected and done together."""

    def __init__(self, session: Session, settings, *, pending: bool, update: bool):
        self.session, self.settings = session, settings
        self.pending, self.update = pending, update
        self.now = clock.now()
        self.new_rows: dict[str, dict] = {}
        self.events: list[tuple[str | int, str, str]] = []  # (email of a new row, or id; kind; detail)
        self.suppressions: dict[str, tuple[str, str]] = {}
        self.mails: list[tuple[int, str, str]] = []
        self.resend: list[Subscriber] = []

    # --- new readers ------------------------------------------------------------

    def add(self, c: Incoming) -> str:
        row = service._new_reader(
            self.settings,
            c,
            source="import",
            consent_text=c.consent_text,
            ip=None,
            double_opt_in=self.pending,
        )
        row["consent_at"] = c.consent_at or self.now
        if c.status in STORED_STATUS:
            row["status"] = STORED_STATUS[c.status]
            row["unsubscribed_at"] = c.left_at or self.now
            self.events.append((c.email, "import", f"imported not active: {c.detail}{_day(c.left_at)}"))
            self._suppress(c)
            result = c.status
        else:
            if self.pending:  # a brand-new row: the first mail of its window, no race possible
                row.update(confirm_sent_at=self.now, confirm_sent_count=1)
            self.events.append((c.email, "subscribe", "import"))
            result = ADDED
        self.new_rows[c.email] = row
        return result

    def again(self, c: Incoming) -> tuple[str, str]:
        """A second line for an address added earlier in this batch: later
        names and topics win, an opt-out always wins, nothing re-activates."""
        row = self.new_rows[c.email]
        if c.status in STORED_STATUS:
            if row["status"] in ("active", "pending"):
                row.update(status=STORED_STATUS[c.status], unsubscribed_at=c.left_at or self.now)
                self.events.append((c.email, "import", f"imported not active: {c.detail}{_day(c.left_at)}"))
            self._suppress(c)
            return c.status, ""
        if row["status"] not in ("active", "pending"):
            return REFUSED_LEFT, ""
        row["name"] = c.name or row["name"]
        row["topics"] = c.topics or row["topics"]
        return UPDATED, ""

    def _suppress(self, c: Incoming) -> None:
        reason = SUPPRESSION_REASON.get(c.status)
        if reason:
            self.suppressions.setdefault(
                email_hash(c.email), (reason, f"import: {c.detail}{_day(c.left_at)}")
            )

    # --- readers we have --------------------------------------------------------

    def join(self, sub: Subscriber, c: Incoming, own: bool) -> tuple[str, str]:
        """An active line for a reader we have."""
        if sub.status in service.LEFT:
            return REFUSED_LEFT, ""
        if c.timezone and not sub.timezone:  # a zone fills a gap; never replaces the reader's own
            sub.timezone = c.timezone
        differences = _differences(sub, c)
        keep = bool(differences) and own and not self.update
        if differences and not keep:
            for field_name, _, theirs in differences:
                setattr(sub, field_name, theirs)
            sub.updated_at = self.now
            self.events.append((sub.id, "import", _describe(differences, kept=False)))
        change = _describe(differences, kept=keep)
        if sub.status == "pending":
            service._record_consent(sub, self.settings, "import", c.consent_text, None)
            if self.pending:
                self.resend.append(sub)
                return UPDATED, "; ".join(filter(None, [change, "confirmation sent again"]))
            sub.status = "active"
            self.events.append((sub.id, "subscribe", "import"))
            return UPDATED, "; ".join(filter(None, [change, "status: pending → active"]))
        if keep:
            return KEPT, change
        return (UPDATED if differences else UNCHANGED), change

    def leave(self, sub: Subscriber, c: Incoming) -> tuple[str, str]:
        """An opted-out line for a reader we have."""
        self._suppress(c)
        if sub.status in service.LEFT:
            return (c.status if c.status in SUPPRESSION_REASON else UNCHANGED), ""
        if sub.confirmed_at and c.left_at and sub.confirmed_at > c.left_at:
            return KEPT, (
                f"kept {sub.status}: confirmed here{_day(sub.confirmed_at)}, after "
                f"'{c.detail}'{_day(c.left_at)}"
            )
        before = sub.status
        sub.status = STORED_STATUS[c.status]
        sub.unsubscribed_at = sub.updated_at = self.now  # links issued before now are stale
        self.events.append((sub.id, "import", f"made not active: {c.detail}{_day(c.left_at)}"))
        return c.status, f"status: {before} → {sub.status} ({c.detail})"

    # --- writing ----------------------------------------------------------------

    def write(self) -> None:
        session = self.session
        ids: dict[str, int] = {}
        if self.new_rows:
            session.execute(insert(Subscriber), list(self.new_rows.values()))
            ids = dict(
                session.execute(
                    select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(list(self.new_rows)))
                ).all()
            )
            if self.pending:
                self.mails.extend(
                    (ids[e], e, row["name"]) for e, row in self.new_rows.items() if row["status"] == "pending"
                )
        if self.events:
            session.execute(
                insert(Event),
                [
                    dict(
                        kind=kind,
                        created_at=self.now,
                        subscriber_id=ids.get(who, who),
                        issue_id=None,
                        delivery_id=None,
                        provider="",
                        detail=detail[:1000],
                    )  # fmt: skip
                    for who, kind, detail in self.events
                ],
            )
        if self.suppressions:
            session.execute(
                insert(Suppression),
                [
                    dict(email_hash=digest, reason=reason, detail=detail[:500], created_at=self.now)
                    for digest, (reason, detail) in self.suppressions.items()
                ],
            )
        for sub in self.resend:
            if service._reserve_confirmation(session, self.settings, sub.id):
                self.mails.append((sub.id, sub.email, sub.name))
        session.flush()


def import_batch(session: Session, settings, batch: list[Incoming], *, pending: bool, update: bool):
    """Apply ``batch`` inside ``session`` (the caller commits, or rolls back
    for a dry run). Returns what each line did and the confirmation mails to
    send once committed: ``(applied, [(subscriber id, address, name)])``."""
    hashes = [email_hash(c.email) for c in batch]
    suppressed = set(
        session.exec(select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes))).all()
    )
    existing = {
        s.email: s
        for s in session.exec(select(Subscriber).where(Subscriber.email.in_([c.email for c in batch]))).all()
    }
    own = _own_choices(session, list(existing.values()))
    work = _Batch(session, settings, pending=pending, update=update)
    applied: list[Applied] = []
    for c, digest in zip(batch, hashes, strict=True):
        wants_active = c.status == ACTIVE or (c.status == UNCONFIRMED and pending)
        sub = existing.get(c.email)
        if digest in suppressed or (digest in work.suppressions and wants_active):
            result, change = (REFUSED_SUPPRESSED if wants_active else UNCHANGED), ""
        elif c.email in work.new_rows:
            result, change = work.again(c)
        elif sub is None:
            result, change = (work.add(c) if wants_active or c.status != UNCONFIRMED else NOT_CONFIRMED), ""
        elif wants_active:
            result, change = work.join(sub, c, sub.id in own)
        elif c.status == UNCONFIRMED:
            result, change = UNCHANGED, ""
        else:
            result, change = work.leave(sub, c)
        applied.append(Applied(c, result, change))
    work.write()
    return applied, work.mails
