"""The bounce mailbox: DSNs and ARF complaint reports read over IMAP.

``poll_bounce_mailbox(settings)`` (a scheduler job) logs in to
``NEWSLETTER_BOUNCE_MAILBOX`` (``imaps://user:pass@host/INBOX``; ``imap://`` for
local tests, ``?tls=starttls`` to upgrade a plain connection), reads each
message not yet processed, and:

* an ARF report (``multipart/report; report-type=feedback-report``) is a
  complaint;
* anything else goes through flufl.bounce, which recognises RFC 3464 DSNs and
  the odd formats of many mail servers: a permanent failure is a hard
  bounce, a temporary one (``Action: delayed``) soft; a message with no
  failure in it (an auto-reply, a newsletter) is left alone.

Which delivery? With VERP on (``NEWSLETTER_BOUNCE_RETURN_PATH``) the bounce
was addressed to the delivery's own signed return path, so it maps to
exactly one delivery, and a bounce without a genuine token is ignored (so a
forged DSN cannot unsubscribe anybody). Without VERP the failed addresses
in the report are used.

Processed messages get ``\\Seen`` and the ``$SignalProcessed`` keyword (when
the server allows keywords), so they are never counted twice even if a
person reads the mailbox. Each message is recorded in its own transaction,
and flagged only after that transaction commits.
"""

from __future__ import annotations

import email
import email.utils
import imaplib
import logging
import ssl
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from urllib.parse import parse_qs, unquote, urlsplit

from flufl.bounce import all_failures

from newsletter import db
from newsletter.config import Settings
from newsletter.feedback import service
from newsletter.feedback.verp import delivery_ids_in, verp_address, verp_enabled
from newsletter.models import Delivery

__all__ = [
    "poll_bounce_mailbox",
    "process_message",
    "read_report",
    "verp_address",
    "Mailbox",
    "parse_mailbox_url",
]

log = logging.getLogger("newsletter.feedback")

KEYWORD = "$SignalProcessed"
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Return-Path")
COMPLAINT_TYPES = {"abuse", "fraud"}
MAX_MESSAGE_BYTES = 5 * 1024 * 1024


@dataclass
class Mailbox:
    secure: bool
    host: str
    port: int
    user: str
    password: str
    folder: str
    starttls: bool


def parse_mailbox_url(url: str) -> Mailbox:
    parts = urlsplit(url)
    if parts.scheme not in {"imap", "imaps"} or not parts.hostname:
        raise ValueError("NEWSLETTER_BOUNCE_MAILBOX must look like imaps://user:pass@host/INBOX")
    secure = parts.scheme == "imaps"
    query = parse_qs(parts.query)
    return Mailbox(
        secure=secure,
        host=parts.hostname,
        port=parts.port or (993 if secure else 143),
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
        starttls=not secure and query.get("tls", [""])[0] == "starttls",
    )


def _connect(box: Mailbox) -> imaplib.IMAP4:
    context = ssl.create_default_context()
    if box.secure:
        conn = imaplib.IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=30)
    else:
        conn = imaplib.IMAP4(box.host, box.port, timeout=30)
        if box.starttls:
            conn.starttls(ssl_context=context)
    conn.login(box.user, box.password)
    return conn


def _quote_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_login(settings: Settings) -> str:
    """Log in to NEWSLETTER_BOUNCE_MAILBOX and open its folder (``doctor``);
    returns what was found, raises for a refused login or a missing folder."""
    box = parse_mailbox_url(settings.bounce_mailbox)
    conn = _connect(box)
    try:
        typ, data = conn.select(_quote_folder(box.folder), readonly=True)
        if typ != "OK":
            raise RuntimeError(f"the folder {box.folder!r} cannot be opened")
        return f"logged in as {box.user} at {box.host}:{box.port}; {box.folder} holds {int(data[0] or 0)} messages"
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def poll_bounce_mailbox(settings: Settings, *, limit: int = 1000) -> int:
    """Read new DSNs and complaint reports; return how many bounces and
    complaints were recorded. Does nothing without NEWSLETTER_BOUNCE_MAILBOX."""
    if not settings.bounce_mailbox:
        return 0
    box = parse_mailbox_url(settings.bounce_mailbox)
    conn = _connect(box)
    recorded = 0
    try:
        typ, _ = conn.select(_quote_folder(box.folder))
        if typ != "OK":
            raise RuntimeError(f"cannot open the folder {box.folder!r} of the bounce mailbox")
        _, perm = conn.response("PERMANENTFLAGS")
        keywords = any(b"\\*" in (flags or b"") for flags in perm or [])
        criterion = f"UNKEYWORD {KEYWORD}" if keywords else "UNSEEN"
        typ, data = conn.uid("SEARCH", None, criterion)
        uids = (data[0] or b"").split() if typ == "OK" else []
        for uid in uids[:limit]:
            raw = _fetch(conn, uid)
            if raw is not None:
                recorded += process_message(settings, raw)
            flags = f"(\\Seen {KEYWORD})" if keywords else "(\\Seen)"
            conn.uid("STORE", uid, "+FLAGS", flags)
    finally:
        try:
            conn.logout()
        except Exception:  # noqa: BLE001 - the work is done; a dropped logout is harmless
            pass
    if recorded:
        log.info("bounce mailbox: %d bounces/complaints recorded", recorded)
    return recorded


def _fetch(conn: imaplib.IMAP4, uid: bytes) -> bytes | None:
    typ, data = conn.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])")
    if typ != "OK":
        return None
    for part in data:
        if isinstance(part, tuple) and len(part) == 2:
            raw = part[1]
            if len(raw) > MAX_MESSAGE_BYTES:
                log.warning("bounce mailbox: skipping an oversized message (%d bytes)", len(raw))
                return None
            return raw
    return None


# --- one message -------------------------------------------------------------------


@dataclass
class Report:
    """What one mailbox message says, read without touching the database."""

    kind: str  # hard | soft | complaint
    delivery_id: int | None = None
    emails: tuple[str, ...] = ()
    detail: str = ""


def read_report(settings: Settings, raw: bytes) -> Report | None:
    """Classify one message; None when it is not a bounce or complaint we can
    attribute. Never raises: a malformed message must not stop the poll."""
    try:
        msg = email.message_from_bytes(raw)
        report = _read_complaint(settings, msg, raw) if _is_arf(msg) else _read_bounce(settings, msg, raw)
    except Exception as exc:  # noqa: BLE001 - flufl.bounce re-raises its detectors' errors
        log.warning("bounce mailbox: unreadable message skipped: %s", exc.__class__.__name__)
        return None
    return report


def process_message(settings: Settings, raw: bytes) -> int:
    """Record what one mailbox message reports; in its own transaction.
    Returns how many bounces/complaints were newly recorded."""
    report = read_report(settings, raw)
    if report is None:
        return 0
    provider = "arf" if report.kind == "complaint" else "dsn"
    recorded = 0
    with db.session_scope() as session:
        if report.delivery_id is not None:
            delivery = session.get(Delivery, report.delivery_id)
            targets = [{"delivery": delivery}] if delivery is not None else []
        else:
            targets = [{"email": address} for address in report.emails]
        for target in targets:
            if report.kind == "complaint":
                outcome = service.record_complaint(session, provider=provider, detail=report.detail, **target)
            else:
                outcome = service.record_bounce(
                    session,
                    settings,
                    provider=provider,
                    hard=report.kind == "hard",
                    detail=report.detail,
                    **target,
                )
            recorded += int(outcome.event_id is not None)
    return recorded


def _is_arf(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and (
        (msg.get_param("report-type") or "").lower() == "feedback-report"
    )


def _delivery_id(settings: Settings, msg: Message, raw: bytes) -> int | None:
    """The one delivery a message is about: its VERP address in the envelope
    headers, else the single genuine token anywhere in it (for example in
    the Return-Path of the returned original)."""
    for name in ENVELOPE_HEADERS:
        for value in msg.get_all(name) or []:
            ids = delivery_ids_in(settings, str(value))
            if ids:
                return ids[0]
    ids = delivery_ids_in(settings, raw.decode("utf-8", "replace"))
    if len(ids) == 1:
        return ids[0]
    if len(ids) > 1:
        log.warning("bounce mailbox: message names %d deliveries; ignored", len(ids))
    return None


def _status_detail(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status" and part.is_multipart():
            for block in part.get_payload():
                status = block.get("Status")
                if status:
                    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
                    return f"{status} {diagnostic}".strip()[:300]
    return str(msg.get("Subject", ""))[:300]


def _decode(addresses) -> list[str]:
    return sorted(a.decode("ascii", "replace") if isinstance(a, bytes) else str(a) for a in addresses)


def _read_bounce(settings: Settings, msg: Message, raw: bytes) -> Report | None:
    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return None
    kind = "hard" if permanent else "soft"
    detail = _status_detail(msg)
    if verp_enabled(settings):
        delivery_id = _delivery_id(settings, msg, raw)
        if delivery_id is None:
            log.warning("bounce mailbox: bounce without a valid VERP token ignored")
            return None
        return Report(kind, delivery_id=delivery_id, detail=detail)
    return Report(kind, emails=tuple(_decode(permanent or temporary)), detail=detail)


def _feedback_fields(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
            if isinstance(payload, str):
                return HeaderParser().parsestr(payload)
    return None


def _original_recipient(msg: Message, fields: Message | None) -> str | None:
    if fields is not None and fields.get("Original-Rcpt-To"):
        return email.utils.parseaddr(str(fields["Original-Rcpt-To"]))[1] or None
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else HeaderParser().parsestr(str(inner))
            address = email.utils.parseaddr(str(inner.get("To", "")))[1]
            if address:
                return address
    return None


def _read_complaint(settings: Settings, msg: Message, raw: bytes) -> Report | None:
    fields = _feedback_fields(msg)
    feedback_type = (
        str(fields.get("Feedback-Type", "abuse")).strip().lower() if fields is not None else "abuse"
    )
    if feedback_type not in COMPLAINT_TYPES:
        return None
    agent = " ".join(str(fields.get("User-Agent", "")).split()) if fields is not None else ""
    detail = f"ARF {feedback_type}: {agent}".strip()[:300]
    if verp_enabled(settings):
        delivery_id = _delivery_id(settings, msg, raw)
        if delivery_id is None:
            log.warning("bounce mailbox: complaint without a valid VERP token ignored")
            return None
        return Report("complaint", delivery_id=delivery_id, detail=detail)
    address = _original_recipient(msg, fields)
    return Report("complaint", emails=(address,), detail=detail) if address else None
