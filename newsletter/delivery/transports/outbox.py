"""``outbox://``: messages are kept in the database and shown in the browser
(``/outbox`` in development, the editor's outbox viewer always): the
transport writes them, ``outbox_page`` and ``parse_outbox`` read them for
both pages."""

from __future__ import annotations

import email
from dataclasses import dataclass
from email.message import Message
from email.policy import default as default_policy

from sqlalchemy import select

from newsletter.db import contains_any, session_scope
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Accepted, Closing, Probe, SendResult
from newsletter.models import OutboxMessage


class OutboxTransport(Closing):
    name = "outbox"
    max_batch = 500

    def send(self, messages: list[OutgoingMessage], accepted: Accepted | None = None) -> list[SendResult]:
        results = []
        with session_scope() as session:
            for message in messages:
                raw = message.as_bytes()
                session.add(
                    OutboxMessage(
                        kind=message.kind,
                        sender=message.sender,
                        recipient=message.to,
                        subject=message.subject,
                        message_id=message.message_id,
                        raw=raw,
                    )
                )
                results.append(SendResult("sent", provider_message_id=message.message_id))
        if accepted is not None:  # committed: the outbox has them
            for message, result in zip(messages, results, strict=True):
                accepted(message, result)
        return results

    def close(self) -> None:
        pass

    def probe(self) -> Probe:
        return Probe("warn", "outbox:// keeps mail in the database: nothing reaches a mailbox")


def check_dsn(dsn) -> None:
    """``outbox://`` takes no options."""


def from_dsn(dsn, settings=None) -> OutboxTransport:
    return OutboxTransport()


@dataclass
class OutboxPage:
    rows: list
    next_before: int | None  # id to pass as ?before= for the next page


def outbox_page(
    session, *, q: str = "", kind: str = "", before: int | None = None, size: int = 50
) -> OutboxPage:
    """The newest messages (before id ``before``), searched by recipient or subject, of one kind."""
    stmt = (
        select(
            OutboxMessage.id,
            OutboxMessage.created_at,
            OutboxMessage.kind,
            OutboxMessage.recipient,
            OutboxMessage.subject,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(size + 1)
    )
    if q:
        stmt = stmt.where(contains_any(q, OutboxMessage.recipient, OutboxMessage.subject))
    if kind:
        stmt = stmt.where(OutboxMessage.kind == kind)
    if before:
        stmt = stmt.where(OutboxMessage.id < before)
    rows = list(session.execute(stmt))
    more = len(rows) > size
    rows = rows[:size]
    return OutboxPage(rows, rows[-1].id if more and rows else None)


@dataclass
class ParsedMail:
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None


def parse_outbox(raw: bytes) -> ParsedMail:
    """Split stored RFC 5322 bytes into headers, HTML part and text part."""
    message: Message = email.message_from_bytes(raw, policy=default_policy)
    headers = [(k, str(v)) for k, v in message.items()]
    html = text = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/html" and html is None:
            html = part.get_content()
        elif kind == "text/plain" and text is None:
            text = part.get_content()
    return ParsedMail(headers, html, text)
