"""Mail encoding: header values and transfer-encoded bodies (RFC 2045-2047).

The lowest layer of the mail code, shared by rendering (a frozen render's
bodies are pre-encoded once, ``Base64Template`` and
``QuotedPrintableTemplate``) and delivery (``delivery.mime`` builds whole
messages from these). A header value with CR, LF or NUL is refused here, so
no input can add a header, whichever path builds the message.
"""

from __future__ import annotations

import binascii
import re
from email.header import Header
from email.utils import quote
from functools import lru_cache

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


def encode_address(name: str, address: str, field: str) -> str:
    check_header(field, address)
    if not address.isascii() or "@" not in address:
        raise ValueError(f"{address!r} needs the SMTPUTF8 path")
    phrase = encode_phrase(name, field)
    return f"{phrase} <{address}>" if phrase else address


def encode_qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (lines of at most 76 characters)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


_B64_LINES = re.compile(rb".{1,76}", re.S)


def _b64_bytes(data: bytes) -> bytes:
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    # lines of 76 (RFC 2045); findall splits in C, a third cheaper than slicing in a loop
    return b"\r\n".join(_B64_LINES.findall(encoded)) + b"\r\n"


def encode_base64(text: str) -> bytes:
    """base64 in lines of 76 characters with CRLF line ends."""
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
            lines = encode_qp(middle + "\n") if more else b""
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
            out.append(encode_qp(line + first + "\n"))
            out.append(lines)
            line = last
        out.append(encode_qp(line))
        return b"".join(out)
