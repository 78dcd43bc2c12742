"""RFC 5322 messages from ``OutgoingMessage``: headers, multipart/alternative
(text first, then HTML), RFC 2047 for non-ASCII names and subjects, and a
hard refusal of CR/LF in any header value so no input can add a header.

Issue mail goes out by the hundred thousand, so the common case (ASCII
addresses) is assembled directly: headers are encoded and folded here, the bodies are
encoded by ``binascii`` (C; text quoted-printable, HTML base64), and the
multipart boundary starts with ``=_``, which neither encoding can produce.
Messages with internationalised addresses (SMTPUTF8, RFC 6531/6532) take the
slower ``email.message.EmailMessage`` path.
"""

from __future__ import annotations

import binascii
import itertools
import re
import uuid
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formatdate, parseaddr, quote
from functools import lru_cache
from typing import NamedTuple

from newsletter import clock
from newsletter.delivery.transports.base import OutgoingMessage

_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 ftext
_ATOM_SPECIALS = re.compile(r'[()<>@,;:\\".\[\]]')
_FOLD_AT = 78


class HeaderInjectionError(ValueError):
    """A header value carried a line break."""


def check_header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderInjectionError(f"line break in the {name} header is not allowed")
    return value


def check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise HeaderInjectionError(f"{name!r} is not a valid header name")
    return name


def make_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain or 'localhost'}>"


def format_address(name: str, address: str) -> Address:
    check_header("address", address)
    check_header("display name", name)
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


# --- header encoding (fast path) ------------------------------------------------


def fold(name: str, value: str) -> str:
    """Fold an ASCII value at spaces so lines stay within 78 characters where
    possible (a single long word, such as a URL, keeps its own line)."""
    if len(name) + 2 + len(value) <= _FOLD_AT:
        return value
    lines: list[str] = []
    current = ""
    room = _FOLD_AT - len(name) - 2
    for word in value.split(" "):
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current, room = word, _FOLD_AT - 1
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n ".join(lines)


@lru_cache(maxsize=4096)
def _rfc2047(name: str, value: str) -> str:
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def encode_text(name: str, value: str) -> str:
    """An unstructured header value (Subject, …): as is when ASCII, else RFC 2047."""
    check_header(name, value)
    if value.isascii():
        return fold(name, value)
    return _rfc2047(name, value)


def encode_phrase(name: str, field: str = "From") -> str:
    """A display name: an atom, a quoted string, or RFC 2047 encoded words."""
    check_header("display name", name)
    if not name:
        return ""
    if not name.isascii():
        return _rfc2047(field, name)
    if _ATOM_SPECIALS.search(name):
        return f'"{quote(name)}"'
    return name


@lru_cache(maxsize=64)
def _from_header(name: str, address: str) -> str:
    return encode_address(name, address, "From")


def encode_address(name: str, address: str, field: str) -> str:
    check_header(field, address)
    if not address.isascii() or "@" not in address:
        raise ValueError(f"{address!r} needs the SMTPUTF8 path")
    phrase = encode_phrase(name, field)
    return f"{phrase} <{address}>" if phrase else address


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


_B64_LINES = re.compile(rb".{1,76}", re.S)


def _b64_bytes(data: bytes) -> bytes:
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    # lines of 76 (RFC 2045); findall splits in C, a third cheaper than slicing in a loop
    return b"\r\n".join(_B64_LINES.findall(encoded)) + b"\r\n"


def _b64(text: str) -> bytes:
    return _b64_bytes(text.encode("utf-8"))


# --- bodies of a frozen render: static parts encoded once --------------------------
#
# An issue's text and HTML are the same for every reader but for a few short
# values (greeting, two links) put into placeholders. Transfer-encoding the whole
# body per message would cost more than everything else in building it, so the
# parts between placeholders are encoded once per render and each message only
# encodes the bytes around its own values. The result decodes to exactly the
# filled string (tests/test_delivery_messages.py checks it against the plain
# encoders for hostile values).


class Base64Template:
    """base64 of ``parts`` (static text at even indexes, values at odd ones).

    base64 maps 3 bytes to 4 characters, and RFC 2045 only caps an encoded
    line at 76 characters, so a body may be cut into pieces that are each a
    whole number of 3-byte groups, encoded and wrapped on their own, and
    joined. Each static part is pre-encoded three times, for the 0, 1 or 2
    bytes the piece before it needs to complete its last group."""

    __slots__ = ("statics",)

    _SHORT = 48  # static parts this short just join the per-message bytes

    def __init__(self, parts: list[str]):
        self.statics = []
        for static in parts[0::2]:
            data = static.encode("utf-8")
            if len(data) < self._SHORT:
                self.statics.append((data, None))
                continue
            encoded = []
            for skip in range(3):
                whole = skip + (len(data) - skip) // 3 * 3
                encoded.append((data[:skip], _b64_bytes(data[skip:whole]), data[whole:]))
            self.statics.append((data, encoded))

    def encode(self, values: list[str]) -> bytes:
        out: list[bytes] = []
        pending = b""
        for index, (data, encoded) in enumerate(self.statics):
            if index:
                pending += values[index - 1].encode("utf-8")
            if encoded is None:
                pending += data
                continue
            head, body, tail = encoded[-len(pending) % 3]
            out.append(_b64_bytes(pending + head))
            out.append(body)
            pending = tail
        out.append(_b64_bytes(pending))
        return b"".join(out)


class QuotedPrintableTemplate:
    """quoted-printable of ``parts`` (static text at even indexes, values at
    odd ones). quoted-printable encodes each line on its own, so every line
    that holds no value is encoded once; a line with a value is encoded per
    message. Values never hold line breaks (``encode`` refuses them)."""

    __slots__ = ("statics",)

    def __init__(self, parts: list[str]):
        self.statics = []
        for static in parts[0::2]:
            static = static.replace("\r\n", "\n").replace("\r", "\n")
            first, newline, rest = static.partition("\n")
            if not newline:
                self.statics.append((static, None, ""))
                continue
            middle, more, last = rest.rpartition("\n")
            lines = _qp(middle + "\n") if more else b""
            self.statics.append((first, lines, last))

    def encode(self, values: list[str]) -> bytes:
        out: list[bytes] = []
        line = ""
        for index, (first, lines, last) in enumerate(self.statics):
            if index:
                value = values[index - 1]
                if "\n" in value or "\r" in value:
                    raise ValueError("a substituted value cannot hold a line break")
                line += value
            if lines is None:
                line += first
                continue
            out.append(_qp(line + first + "\n"))
            out.append(lines)
            line = last
        out.append(_qp(line))
        return b"".join(out)


def _encoded(subtype: str, body: str, encoded: bytes | None = None) -> bytes:
    """Text in quoted-printable (readable in any mail source view); HTML in
    base64, which costs a tenth of quoted-printable for a 20 KB newsletter
    and copes with MJML's long lines just as well. ``encoded``: the body
    already encoded that way (from a template above)."""
    if encoded is not None:
        return encoded
    return _b64(body) if subtype == "html" else _qp(body)


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


def header_lines(message: OutgoingMessage) -> list[str]:
    """The top-level headers (without MIME ones), encoded and folded."""
    from_name, from_addr = _sender(message.sender)
    if not message.message_id:
        message.message_id = make_message_id(from_addr.rpartition("@")[2])
    lines = [
        f"From: {_from_header(from_name, from_addr)}",
        f"To: {encode_address(message.to_name, message.to, 'To')}",
        _header_line("Subject", message.subject),
        f"Date: {_date()}",
        f"Message-ID: {check_header('Message-ID', message.message_id)}",
    ]
    lines += [_header_line(name, value) for name, value in message.headers.items()]
    return lines


@lru_cache(maxsize=512)
def _header_line(name: str, value: str) -> str:
    """One extra header, checked and encoded; cached, as most are the same in
    every message of a send (List-Id, Feedback-ID, …)."""
    return f"{check_header_name(name)}: {encode_text(name, value)}"


# A random prefix per process and a counter: unique enough (the "=_" already
# keeps it out of both encodings) without a urandom call per message.
_BOUNDARY_PREFIX = f"=_{uuid.uuid4().hex[:16]}."
_boundary_numbers = itertools.count(1)


class Built(NamedTuple):
    """A message as bytes, with what later steps would otherwise re-read them for."""

    raw: bytes
    lines: list[str] | None  # the header lines as written (the DKIM signer signs from them)
    dot_lines: bool | None  # whether a line starts with "." (SMTP dot-stuffing); None: unknown


def _build_fast(message: OutgoingMessage) -> Built:
    bodies = message.bodies  # pre-encoded (rendering.personalise.Bodies) or None
    lines = header_lines(message)
    lines.append("MIME-Version: 1.0")
    text = _encoded("plain", message.text, bodies and bodies.text_qp())
    # Only the quoted-printable text can start a line with a dot: header lines
    # start with a name or a fold, base64 has no dot in its alphabet.
    dots = text.startswith(b".") or b"\n." in text
    if message.html is None:
        lines += _PLAIN_HEADERS
        return Built("\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + text, lines, dots)
    boundary = f"{_BOUNDARY_PREFIX}{next(_boundary_numbers)}"
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = "\r\n".join(lines).encode("ascii")
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
            _encoded("html", message.html, bodies and bodies.html_base64()),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return Built(raw, lines, dots)


# --- the general path (internationalised addresses) ------------------------------


def build_message(message: OutgoingMessage) -> EmailMessage:
    from_name, from_addr = parseaddr(check_header("From", message.sender))
    if not message.message_id:
        message.message_id = make_message_id(from_addr.rpartition("@")[2])
    msg = EmailMessage(policy=SMTP)
    msg["From"] = format_address(from_name, from_addr)
    msg["To"] = format_address(message.to_name, message.to)
    msg["Subject"] = check_header("Subject", message.subject)
    msg["Date"] = _date()
    msg["Message-ID"] = check_header("Message-ID", message.message_id)
    for name, value in message.headers.items():
        msg[check_header_name(name)] = check_header(name, value)
    msg.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if message.html:
        msg.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def needs_smtputf8(message: OutgoingMessage) -> bool:
    """Internationalised addresses (RFC 6531) need SMTPUTF8 end to end."""
    return not (message.to.isascii() and _sender(message.sender)[1].isascii())


def build(message: OutgoingMessage) -> Built:
    if not needs_smtputf8(message):
        return _build_fast(message)
    return Built(build_message(message).as_bytes(policy=SMTPUTF8), None, None)
