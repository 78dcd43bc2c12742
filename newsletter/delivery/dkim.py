"""DKIM signing (RFC 6376) that does not cap throughput.

``cryptography`` (OpenSSL) does the RSA: dkimpy's pure-Python RSA costs
about 10 ms a message, OpenSSL about 0.3 ms (and it releases the GIL, so
sender threads sign in parallel). For messages our builder wrote, the
signer reads the header lines it already has (``mime.Built.lines``): the
choice of headers and the folded tags are worked out once a send, lines that
are the same in every message are canonicalised once, and the body is hashed
in place. Anything else (bare LF, odd field names) is parsed by dkimpy's
``rfc822_parse``. ``signature_headers`` signs many messages with the RSA
operations back to back, which costs less CPU a message than alternating
them with the rest. Every signature is checked with ``dkim.verify`` in the
tests, including against dkimpy's own canonicalisation.

The signature covers From, To, Subject, Date, Message-ID, List-Id,
List-Unsubscribe and List-Unsubscribe-Post (when present) plus the MIME
headers and Feedback-ID, so a forwarder cannot swap the unsubscribe target.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from functools import lru_cache
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import Simple

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"mime-version",
    b"content-type",
)
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")
_NAME = b"DKIM-Signature"


class DkimSigner:
    """Signs raw RFC 5322 messages for one domain and selector."""

    def __init__(self, domain: str, selector: str, private_key_pem: bytes):
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = b"rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = b"ed25519-sha256"
        else:
            raise ValueError("DKIM key must be RSA or Ed25519 (PEM)")
        self.key = key

    @classmethod
    def from_settings(cls, settings) -> DkimSigner | None:
        if not (settings and settings.dkim_domain and settings.dkim_selector and settings.dkim_key_file):
            return None
        return _cached(settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file)

    def _signature(self, digest: bytes) -> bytes:
        if self.algorithm == b"rsa-sha256":
            return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return self.key.sign(digest)

    def signature_header(self, raw: bytes, lines: list[str] | None = None) -> bytes:
        """The ``DKIM-Signature: …\r\n`` line(s) to put in front of ``raw``.
        ``lines``: the header lines exactly as ``raw`` holds them ("Name:
        value", folds included), when the caller built them (saves parsing)."""
        return self.signature_headers([(raw, lines)])[0]

    def signature_headers(self, messages: list[tuple[bytes, list[str] | None]]) -> list[bytes]:
        """``signature_header`` of many messages: hashing first, then the RSA
        operations back to back, which costs less CPU a message than
        alternating them (the RSA code evicts what the rest had in cache)."""
        prepared = [self._prepare(raw, lines) for raw, lines in messages]
        signatures = [base64.b64encode(self._signature(digest)) for digest, _, _ in prepared]
        # Folds only where the hashed form has a space, or inside b= (whose value
        # verifiers read without white space): the relaxed form stays the same.
        return [
            b"".join(
                [
                    _NAME,
                    b": ",
                    folded,
                    b"\r\n bh=",
                    body_hash,
                    b";\r\n b=",
                    b"\r\n ".join(_SIG_LINES.findall(signature)),
                    b"\r\n",
                ]
            )
            for (_, folded, body_hash), signature in zip(prepared, signatures, strict=True)
        ]

    def _prepare(self, raw: bytes, lines: list[str] | None) -> tuple[bytes, bytes, bytes]:
        """(digest to sign, folded tags before bh=, body hash) of one message."""
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError("message has no header/body separator")
        if lines is not None:
            names, picks = _plan(tuple([line[: line.index(":")].lower().encode("ascii") for line in lines]))
            canonical = [_canonical_line(lines[i]) for i in picks]
        else:
            headers = _split_headers(raw[:end]) or dkim.rfc822_parse(raw[: end + 4])[0]
            names, picks = _plan(tuple(name.lower() for name, _ in headers))
            canonical = [_relaxed(*headers[i]) for i in picks]  # (not the bulk path: no cache)
        body_hash = base64.b64encode(hashlib.sha256(_canonical_body(raw, end + 4)).digest())
        folded, relaxed = self._prefix(names, int(time.time()))
        # RFC 6376 3.7: the selected headers (relaxed), then this header with an
        # empty b= and without its final CRLF.
        data = b"".join(canonical)
        data += relaxed + b" bh=" + body_hash + b"; b="
        return hashlib.sha256(data).digest(), folded, body_hash

    @lru_cache(maxsize=8)  # noqa: B019 - a handful of signers live for the whole process
    def _prefix(self, names: bytes, timestamp: int) -> tuple[bytes, bytes]:
        """The tags before ``bh=`` (the same for a whole send but for t=),
        folded for the header and in relaxed form for the hash."""
        fields = [
            (b"v", b"1"),
            (b"a", self.algorithm),
            (b"c", b"relaxed/simple"),
            (b"d", self.domain),
            (b"s", self.selector),
            (b"t", str(timestamp).encode("ascii")),
            (b"h", names),
        ]
        value = b"; ".join(b"=".join(f) for f in fields) + b";"
        folded = dkim.fold(value, namelen=len(_NAME), linesep=b"\r\n")
        return folded, _relaxed(_NAME, b" " + value)[:-2]

    def sign(self, raw: bytes, lines: list[str] | None = None) -> bytes:
        return self.signature_header(raw, lines) + raw

    def sign_messages(self, messages) -> None:
        """Build every ``OutgoingMessage`` not yet signed and sign them in one
        go (``signature_headers``); each keeps its DKIM-Signature header in
        ``dkim_signature`` (``signed_bytes`` puts it in front of the bytes)."""
        todo = [m for m in messages if m.dkim_signature is None]
        built = [m.built() for m in todo]
        headers = self.signature_headers([(b.raw, b.lines) for b in built])
        for message, header in zip(todo, headers, strict=True):
            message.dkim_signature = header


_SIG_LINES = re.compile(rb".{1,72}", re.S)


def _canonical_body(raw: bytes, start: int):
    """c=.../simple: the body as is, trailing empty lines reduced to one CRLF.
    A body that already ends in exactly one CRLF (ours) is hashed in place."""
    if raw.endswith(b"\r\n") and not raw.endswith(b"\r\n\r\n") and len(raw) > start:
        return memoryview(raw)[start:]
    return Simple.canonicalize_body(raw[start:])


@lru_cache(maxsize=64)
def _plan(names: tuple[bytes, ...]) -> tuple[bytes, tuple[int, ...]]:
    """For a message's header names in order: the ``h=`` value and which
    header instances it signs, in its order. Repeated names are signed
    bottom-up (RFC 6376 5.4.2); over-signing (naming From, Subject and the
    List-Unsubscribe pair once more than they occur) signs their absence, so
    nobody can add a second one after signing. Every message of a send has
    the same names, so this runs once a send."""
    lowered = list(names)  # (lower-cased by the caller)
    include = [h for h in SIGNED_HEADERS if h in lowered]
    include += [h for h in OVERSIGNED if h in lowered]
    instances: dict[bytes, list[int]] = {}
    for index, name in enumerate(lowered):
        instances.setdefault(name, []).append(index)
    picks = []
    for wanted in include:
        found = instances.get(wanted)
        if found:
            picks.append(found.pop())
    return b" : ".join(include), tuple(picks)


_WSP = re.compile(rb"[\t ]+")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def _split_headers(block: bytes) -> list[tuple[bytes, bytes]] | None:
    """(name, value) pairs of a CRLF header block, continuation lines kept in
    the value as dkimpy's ``rfc822_parse`` keeps them. None for anything
    unusual (bare LF or CR, a line without a colon): dkimpy parses those."""
    if block.count(b"\n") != block.count(b"\r\n") or block.count(b"\r") != block.count(b"\r\n"):
        return None
    headers: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not headers:
                return None
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return None
        headers.append((name, value))
    return headers


def _relaxed(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2 relaxed header canonicalisation (as dkimpy does it):
    lower-case name, unfolded value, runs of WSP made one space, trimmed."""
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    return name.lower().rstrip() + b":" + value.strip() + b"\r\n"


_WSP_TEXT = re.compile(r"[\t ]+")
_PER_MESSAGE = ("to:", "date:", "message-id:", "list-unsubscribe:", "content-type:")


def _canonical_line(line: str) -> bytes:
    """``_relaxed`` for a "Name: value" line our builder wrote (ASCII);
    the lines that are the same in every message are looked up, not redone."""
    if line[:18].lower().startswith(_PER_MESSAGE):
        return _relaxed_text(line)
    return _relaxed_cached(line)


def _relaxed_text(line: str) -> bytes:
    name, _, value = line.partition(":")
    value = value.replace("\r\n", "")
    if "\t" in value or "  " in value:
        value = _WSP_TEXT.sub(" ", value)
    return f"{name.lower().rstrip()}:{value.strip()}\r\n".encode("ascii")


_relaxed_cached = lru_cache(maxsize=256)(_relaxed_text)


_signers: dict[tuple[str, str, str], DkimSigner] = {}
_lock = threading.Lock()


def _cached(domain: str, selector: str, key_file: str) -> DkimSigner:
    key = (domain, selector, key_file)
    with _lock:
        signer = _signers.get(key)
        if signer is None:
            signer = _signers[key] = DkimSigner(domain, selector, Path(key_file).read_bytes())
        return signer


def generate_key(path: str | Path, bits: int = 2048) -> str:
    """Write a new RSA private key (PEM) to ``path``; return the DNS TXT value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    Path(path).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")
