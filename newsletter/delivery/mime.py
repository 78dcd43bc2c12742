"""RFC 5322 messages from ``OutgoingMessage``: headers, multipart/alternative
(text first, then HTML), RFC 2047 for non-ASCII names and subjects, and a
hard refusal of CR/LF in any header value so no input can add a header."""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formatdate, parseaddr

from newsletter.delivery.transports.base import OutgoingMessage


class HeaderInjectionError(ValueError):
    """A header value carried a line break."""


def check_header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderInjectionError(f"line break in the {name} header is not allowed")
    return value


def make_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain or 'localhost'}>"


def format_address(name: str, address: str) -> Address:
    check_header("address", address)
    check_header("display name", name)
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def build_message(message: OutgoingMessage) -> EmailMessage:
    from_name, from_addr = parseaddr(check_header("From", message.sender))
    if not message.message_id:
        message.message_id = make_message_id(from_addr.rpartition("@")[2])
    msg = EmailMessage(policy=SMTP)
    msg["From"] = format_address(from_name, from_addr)
    msg["To"] = format_address(message.to_name, message.to)
    msg["Subject"] = check_header("Subject", message.subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = check_header("Message-ID", message.message_id)
    for name, value in message.headers.items():
        msg[check_header("header name", name)] = check_header(name, value)
    msg.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if message.html:
        msg.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def needs_smtputf8(message: OutgoingMessage) -> bool:
    """Internationalised addresses (RFC 6531) need SMTPUTF8 end to end."""
    return not (message.to.isascii() and message.sender.isascii())


def build_bytes(message: OutgoingMessage) -> bytes:
    policy = SMTPUTF8 if needs_smtputf8(message) else SMTP
    return build_message(message).as_bytes(policy=policy)
