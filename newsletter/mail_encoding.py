"""Mail encoding: header values and transfer-encoded bodies (RFC 2045-2047).

The lowest layer of the mail code, shared by rendering (a frozen render's
bodies are pre-encoded once, ``Base64Template`` and
``QuotedPrintableTemplate``) and delivery (``delivery.mime`` builds whole
messages from these). A header value with CR, LF or NUL is refused here, so
no input can add a header, whichever path builds the message.

Two kinds of header value are kept apart:

* unstructured text (Subject) and display names are RFC 2047 encoded words
  when they are not ASCII;
* structured values (addresses, Message-ID, List-Id, List-Unsubscribe) never
  are: receivers parse them, and an encoded word hides the URL or the
  address from the parser (a List-Unsubscribe wrapped in encoded words gives
  Gmail no unsubscribe button). Internationalised domains are written as
  A-labels (IDNA), non-ASCII in a URI is percent-encoded (RFC 3987 3.1), and
  only an address whose local part is not ASCII needs the SMTPUTF8 path
  (RFC 6531/6532), where it is written as UTF-8.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from email.header import Header
from email.utils import quote
from functools import lru_cache
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit, urlunsplit

import idna

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


def encode_address(name: str, address: str, field: str, *, utf8: bool = False) -> str:
    """``Name <address>`` with the name as a phrase (encoded words when not
    ASCII) and the address never encoded: an internationalised domain as
    A-labels, a UTF-8 local part only on the SMTPUTF8 path (``utf8``)."""
    check_header(field, address)
    if "@" not in address:
        raise ValueError(f"{address!r} is not an address")
    wire = wire_address(address)
    if not (utf8 or wire.isascii()):
        raise ValueError(f"{address!r} needs the SMTPUTF8 path")
    phrase = encode_phrase(name, field)
    if not phrase:
        return wire
    value = f"{phrase} <{wire}>"
    if len(field) + 2 + len(value) <= _FOLD_AT:
        return value
    # a long name: fold it, and put the address on a line of its own when
    # it would not fit after the name's last line
    if phrase.isascii() and "\r\n" not in phrase:
        phrase = fold(field, phrase)
    last = phrase.rpartition("\n")[2]
    start = 0 if "\n" in phrase else len(field) + 2
    joint = " " if start + len(last) + len(wire) + 3 <= _FOLD_AT else "\r\n "
    return f"{phrase}{joint}<{wire}>"


# --- internationalised addresses, domains and URIs ------------------------------


class InvalidDomain(ValueError):
    """A domain that IDNA cannot write as A-labels."""


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain as A-labels (IDNA 2008 with the UTS 46 mapping browsers
    use): ``bücher.example`` → ``xn--bcher-kva.example``. ASCII stays as is."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidDomain(f"{domain!r} is not a valid internationalised domain name: {exc}") from None


def wire_address(address: str) -> str:
    """The address as written in a header or an SMTP envelope: the domain in
    A-labels, so an ASCII local part at an IDN domain needs no SMTPUTF8."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


def needs_utf8(address: str) -> bool:
    """Whether the address can only travel over SMTPUTF8 (its local part is not ASCII)."""
    return not address.isascii() and not address.rpartition("@")[0].isascii()


_URI_KEEP = "!#$%&'()*+,/:;=?@[]~"  # reserved characters and existing escapes: left as they are


def ascii_uri(uri: str) -> str:
    """A URI as ASCII, for a header: the host in A-labels and any other
    non-ASCII character percent-encoded as UTF-8 (RFC 3987 3.1); in a
    ``mailto:`` the local part is percent-encoded too (RFC 6068 2)."""
    if uri.isascii():
        return uri
    parts = urlsplit(uri)
    if parts.scheme.lower() == "mailto":
        local, at, domain = parts.path.rpartition("@")
        path = f"{url_quote(local, safe=_URI_KEEP)}{at}{ascii_domain(domain)}" if at else parts.path
        return urlunsplit((parts.scheme, "", path, url_quote(parts.query, safe=_URI_KEEP), ""))
    userinfo, at, host_port = parts.netloc.rpartition("@")
    host, colon, port = host_port.partition(":")
    netloc = f"{url_quote(userinfo, safe=_URI_KEEP)}{at}{ascii_domain(host)}{colon}{port}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            url_quote(parts.path, safe=_URI_KEEP),
            url_quote(parts.query, safe=_URI_KEEP),
            url_quote(parts.fragment, safe=_URI_KEEP),
        )
    )


# --- structured headers: never encoded words ------------------------------------

STRUCTURED = frozenset(
    {
        "message-id",
        "in-reply-to",
        "references",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-subscribe",
        "list-post",
        "list-help",
        "list-owner",
        "list-archive",
    }
)
_ANGLED = re.compile(r"<([^<>]*)>")


def encode_structured(name: str, value: str) -> str:
    """A structured header value, folded at the spaces after commas and
    never RFC 2047: URIs in angle brackets are written as ASCII
    (``ascii_uri``); any other non-ASCII text is refused, as a bug."""
    check_header(name, value)
    if not value.isascii():
        value = _ANGLED.sub(lambda m: f"<{ascii_uri(m.group(1))}>", value)
        if not value.isascii():
            raise ValueError(f"the {name} header must be ASCII (no encoded words): {value!r}")
    return fold(name, value)


def encode_header(name: str, value: str) -> str:
    """Any header value: structured ones as such, the rest as text."""
    if name.lower() in STRUCTURED:
        return encode_structured(name, value)
    return encode_text(name, value)


def list_id_value(description: str, list_id: str) -> str:
    """``List-Id`` (RFC 2919): ``"description" <list-id>``, all ASCII. Its
    readers do not decode encoded words here (Nodemailer's mailparser, for
    one, shows them as they are, and reads a List-Id without a description
    as a name, not an id), so a description that is not ASCII is written
    without its accents and other scripts, or as the id's first label."""
    check_header("List-Id", description)
    plain = unicodedata.normalize("NFKD", description).encode("ascii", "ignore").decode()
    plain = " ".join(plain.split()).strip(" -,;:")
    if not any(c.isalnum() for c in plain):
        plain = list_id.split(".")[0]
    return f"{encode_phrase(plain, 'List-Id')} <{ascii_domain(list_id)}>"


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
