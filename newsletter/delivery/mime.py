"""RFC 5322 messages from ``OutgoingMessage``: headers, multipart/alternative
(text first, then HTML), RFC 2047 for non-ASCII names and subjects, and a
hard refusal of CR/LF in any header value so no input can add a header
(the encoders are in ``newsletter.mail_encoding``).

Issue mail goes out by the hundred thousand, so messages are assembled
directly: headers are encoded and folded here, the bodies are encoded by
``binascii`` (C; text quoted-printable, HTML base64, lines of at most 76
characters), and the multipart boundary starts with ``=_``, which neither
encoding can produce. Structured headers (addresses, Message-ID, List-Id,
List-Unsubscribe) are never encoded words; an internationalised domain is
written as A-labels, so only an address whose local part is not ASCII needs
SMTPUTF8 (RFC 6531/6532): those messages are built the same way, with that
address in UTF-8.
"""

from __future__ import annotations

import itertools
import uuid
from email.utils import formatdate, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from newsletter import clock
from newsletter.mail_encoding import (
    HeaderInjectionError,
    ascii_domain,
    check_header,
    check_header_name,
    encode_address,
    encode_base64,
    encode_header,
    encode_qp,
    encode_structured,
    needs_utf8,
)

if TYPE_CHECKING:
    from newsletter.delivery.message import OutgoingMessage

__all__ = ["Built", "HeaderInjectionError", "build", "header_lines", "needs_smtputf8"]


def make_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{ascii_domain(domain) if domain else 'localhost'}>"


@lru_cache(maxsize=64)
def _from_header(name: str, address: str, utf8: bool) -> str:
    return encode_address(name, address, "From", utf8=utf8)


def _encoded_bodies(message: OutgoingMessage) -> tuple[bytes, bytes | None]:
    """The text in quoted-printable (readable in any mail source view) and
    the HTML in base64 (a tenth of quoted-printable's cost for a 20 KB
    newsletter, and it copes with MJML's long lines just as well), or None
    for a text-only message. An issue message brings them pre-encoded
    (``rendering.personalise.Bodies``): its text and HTML strings are then
    never read (nor joined)."""
    bodies = message.bodies
    if bodies is not None:
        return bodies.text_qp(), bodies.html_base64()
    html = message.html
    return encode_qp(message.text), None if html is None else encode_base64(html)


_PLAIN_HEADERS = ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: quoted-printable"]
_PART_HEADS = {
    subtype: f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'.encode()
    for subtype, cte in (("plain", "quoted-printable"), ("html", "base64"))
}


_last_date: tuple[int, str] = (-1, "")


def _date() -> str:
    """The Date header; formatted once a second, not once a message."""
    global _last_date
    second = int(clock.timestamp())
    cached = _last_date
    if cached[0] != second:
        cached = _last_date = (second, formatdate(second, usegmt=True))
    return cached[1]


@lru_cache(maxsize=64)
def _sender(sender: str) -> tuple[str, str]:
    return parseaddr(check_header("From", sender))


def header_lines(message: OutgoingMessage, utf8: bool = False) -> list[str]:
    """The top-level headers (without MIME ones), encoded and folded.
    ``utf8``: the SMTPUTF8 path, where an address may be written in UTF-8."""
    from_name, from_addr = _sender(message.sender)
    if not message.message_id:
        message.message_id = make_message_id(from_addr.rpartition("@")[2])
    lines = [
        f"From: {_from_header(from_name, from_addr, utf8)}",
        f"To: {encode_address(message.to_name, message.to, 'To', utf8=utf8)}",
        _header_line("Subject", message.subject),
        f"Date: {_date()}",
        f"Message-ID: {encode_structured('Message-ID', message.message_id)}",
    ]
    lines += [_header_line(name, value) for name, value in message.headers.items()]
    return lines


@lru_cache(maxsize=512)
def _header_line(name: str, value: str) -> str:
    """One header, checked and encoded (structured ones never as encoded
    words); cached, as most are the same in every message of a send
    (List-Id, Feedback-ID, …)."""
    return f"{check_header_name(name)}: {encode_header(name, value)}"


# A random prefix per process and a counter: unique enough (the "=_" already
# keeps it out of both encodings) without a urandom call per message.
_BOUNDARY_PREFIX = f"=_{uuid.uuid4().hex[:16]}."
_boundary_numbers = itertools.count(1)


class Built(NamedTuple):
    """A message as bytes, with what later steps would otherwise re-read them for."""

    raw: bytes
    lines: list[str] | None  # the header lines as written (the DKIM signer signs from them)
    dot_lines: bool | None  # whether a line starts with "." (SMTP dot-stuffing); None: unknown


def _build(message: OutgoingMessage, utf8: bool = False) -> Built:
    lines = header_lines(message, utf8)
    lines.append("MIME-Version: 1.0")
    text, html = _encoded_bodies(message)
    # Only the quoted-printable text can start a line with a dot: header lines
    # start with a name or a fold, base64 has no dot in its alphabet.
    dots = text.startswith(b".") or b"\n." in text
    charset = "utf-8" if utf8 else "ascii"
    # The DKIM signer reads the lines we wrote only when they are ASCII; it
    # parses a UTF-8 header block itself.
    signer_lines = None if utf8 else lines
    if html is None:
        lines += _PLAIN_HEADERS
        return Built("\r\n".join(lines).encode(charset) + b"\r\n\r\n" + text, signer_lines, dots)
    boundary = f"{_BOUNDARY_PREFIX}{next(_boundary_numbers)}"
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = "\r\n".join(lines).encode(charset)
    sep = f"\r\n--{boundary}\r\n".encode("ascii")
    raw = b"".join(
        [
            head,
            b"\r\n",
            sep,
            _PART_HEADS["plain"],
            text,
            sep,
            _PART_HEADS["html"],
            html,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return Built(raw, signer_lines, dots)


def needs_smtputf8(message: OutgoingMessage) -> bool:
    """Only an address whose local part is not ASCII needs SMTPUTF8 end to
    end (RFC 6531); an internationalised domain is written as A-labels."""
    if message.to.isascii() and _sender(message.sender)[1].isascii():
        return False
    return needs_utf8(message.to) or needs_utf8(_sender(message.sender)[1])


def build(message: OutgoingMessage) -> Built:
    return _build(message, needs_smtputf8(message))
