"""The transport protocol, modelled on Django's mail backends.

A transport takes a batch of ``OutgoingMessage`` (at most ``max_batch``)
and returns one ``SendResult`` per message, in order. It never raises for a
single recipient's failure: that is a result. It raises ``TransportError``
only when the whole batch could not be attempted (so the dispatcher retries
the batch later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class OutgoingMessage:
    """One email to one recipient, with everything an SMTP server or an ESP
    API needs. ``as_bytes()`` gives the RFC 5322 form (built, and DKIM-signed
    when configured, by ``newsletter.delivery.mime``)."""

    sender: str  # "Name <address>"
    to: str  # bare address
    subject: str
    text: str
    html: str | None = None
    to_name: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # List-*, Feedback-ID, …
    message_id: str = ""  # "<…@host>", set by the builder when empty
    return_path: str = ""  # envelope sender (VERP); defaults to the From address
    kind: str = "transactional"  # transactional | issue | test
    delivery_id: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # delivery_id, issue: ESP tags/custom args
    # Per-recipient values (unsubscribe URL, …) that batch APIs with substitutions
    # (SendGrid, Mailgun) turn back into tags so one body serves many recipients.
    merge_fields: dict[str, str] = field(default_factory=dict)
    # The text and HTML already transfer-encoded from a frozen render's
    # pre-encoded parts (``rendering.personalise.Bodies``), or None.
    bodies: object | None = field(default=None, repr=False)
    _signed: bytes | None = field(default=None, repr=False)
    _built: object | None = field(default=None, repr=False)  # mime.Built

    def as_bytes(self) -> bytes:
        return self.built().raw

    def built(self):
        """``mime.Built``: the bytes plus the header lines and whether a line starts with a dot."""
        if self._built is None:
            from newsletter.delivery.mime import build

            self._built = build(self)
        return self._built

    def signed_bytes(self, signer) -> bytes:
        """``as_bytes()`` with a DKIM-Signature in front (once; retries reuse it)."""
        if signer is None:
            return self.as_bytes()
        if self._signed is None:
            sign_all([self], signer)
        return self._signed


def sign_all(messages: list[OutgoingMessage], signer) -> None:
    """Build every message, then DKIM-sign them all in one go (see
    ``DkimSigner.signature_headers``); ``signed_bytes`` then returns at once."""
    built = [message.built() for message in messages]
    if signer is None:
        return
    todo = [(m, b) for m, b in zip(messages, built, strict=True) if m._signed is None]
    headers = signer.signature_headers([(b.raw, b.lines) for _, b in todo])
    for (message, b), header in zip(todo, headers, strict=True):
        message._signed = header + b.raw


@dataclass
class SendResult:
    """What happened to one message.

    ``status``: ``sent``; ``transient`` (retry later, after ``retry_after``
    seconds when the provider said so); ``permanent`` (the address is bad:
    bounce and suppress); ``rejected`` (this message will never be accepted,
    e.g. the provider refused its content, but the address is not known to
    be bad: fail the row with the reason, do not suppress).
    """

    status: str
    provider_message_id: str = ""
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "sent"


class TransportError(Exception):
    """The whole batch failed before any message could be judged (connection
    refused, timeout, 429 or 5xx from the API front door). Nothing in the
    batch is charged an attempt; the batch goes back to the queue."""

    def __init__(self, message: str, retry_after: float | None = None, *, fatal: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        # fatal: retrying cannot help until a person acts (bad credentials,
        # unverified sender); the dispatcher pauses the issue instead of spinning.
        self.fatal = fatal


class Transport(Protocol):
    max_batch: int

    def send(self, messages: list[OutgoingMessage]) -> list[SendResult]: ...

    def close(self) -> None: ...
