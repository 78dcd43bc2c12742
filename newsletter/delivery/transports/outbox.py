"""``outbox://``: messages are kept in the database and shown in the browser
(``/outbox`` in development, the editor's outbox viewer always)."""

from __future__ import annotations

from newsletter.db import session_scope
from newsletter.delivery.transports.base import OutgoingMessage, SendResult
from newsletter.models import OutboxMessage


class OutboxTransport:
    max_batch = 500

    def send(self, messages: list[OutgoingMessage]) -> list[SendResult]:
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
        return results

    def close(self) -> None:
        pass
