"""``OutgoingMessage``: one email to one recipient, as the transports take it.

Kept apart from the transport protocol (``transports.base``) and from MIME
assembly (``mime``): a message knows what it says; ``mime.build`` turns it
into bytes once, and a DKIM signer (``dkim.DkimSigner``) puts its signature
in front once, however many times a transport asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.delivery import mime
from newsletter.rendering.personalise import JoinedOnRead


@dataclass
class OutgoingMessage:
    """Everything an SMTP server or an ESP API needs for one message."""

    sender: str  # "Name <address>"
    to: str  # bare address
    subject: str
    text: str = JoinedOnRead()  # or, for an issue, a function that joins it (see JoinedOnRead)
    html: str | None = JoinedOnRead(None)
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
    # The DKIM-Signature header line(s), set by ``DkimSigner.sign_messages``:
    # the signed message is this and the bytes, joined only when sent (a
    # batch in hand keeps one copy of each message, not two).
    dkim_signature: bytes | None = field(default=None, repr=False)
    _built: mime.Built | None = field(default=None, repr=False)

    def as_bytes(self) -> bytes:
        return self.built().raw

    def built(self) -> mime.Built:
        """The bytes plus the header lines and whether a line starts with a dot."""
        if self._built is None:
            self._built = mime.build(self)
        return self._built

    def signed_bytes(self, signer) -> bytes:
        """``as_bytes()`` with a DKIM-Signature in front (signed once; retries reuse it)."""
        if signer is None:
            return self.as_bytes()
        if self.dkim_signature is None:
            signer.sign_messages([self])
        return self.dkim_signature + self.as_bytes()
