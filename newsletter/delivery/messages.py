"""The email one reader gets of an issue: the personalised render plus the
headers mailbox providers look for in bulk mail.

- ``List-Unsubscribe``: the reader's own https link (an opaque signed token)
  and a mailto naming the same token; ``List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`` (RFC 8058) lets Gmail and Yahoo unsubscribe
  with one POST, without a page;
- ``List-Id`` (RFC 2919), ``Feedback-ID`` (Gmail's feedback loop: issue,
  kind, list, sender), ``Auto-Submitted: auto-generated`` (RFC 3834: no
  vacation replies);
- a ``Message-ID`` derived from the secret, the issue's freeze time and the
  delivery id: the same on every retry of one delivery (a receiver can drop a
  duplicate resent after a crash) and unique across sends and installations.
"""

from __future__ import annotations

import hashlib
import re
from email.utils import parseaddr
from functools import lru_cache
from html import escape
from urllib.parse import quote

from newsletter.config import Settings
from newsletter.delivery.message import OutgoingMessage
from newsletter.feedback.verp import verp_address
from newsletter.mail_encoding import ascii_domain, ascii_uri, list_id_value
from newsletter.rendering.personalise import greeting


@lru_cache(maxsize=16)
def _constants(mail_from: str, list_id: str) -> tuple[str, str, str]:
    """(List-Id, the From address as a mailto: target, its domain in
    A-labels): parsed once per configuration. All ASCII, whatever the
    configured names and domains are written in."""
    name, address = parseaddr(mail_from)
    mailto = ascii_uri(f"mailto:{address}").removeprefix("mailto:")
    domain = ascii_domain(address.rpartition("@")[2]) or "localhost"
    return list_id_value(name or "GET THE SIGNAL", list_id), mailto, domain


def list_id(settings: Settings) -> str:
    return _constants(settings.mail_from, settings.effective_list_id)[0]


_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*")  # what quote() leaves alone: signed tokens are all of it


def list_unsubscribe(settings: Settings, unsubscribe_url: str) -> str:
    token = unsubscribe_url.rstrip("/").rsplit("/", 1)[-1]
    address = _constants(settings.mail_from, settings.effective_list_id)[1]
    quoted = token if _URL_SAFE.fullmatch(token) else quote(token)
    return f"<{ascii_uri(unsubscribe_url)}>, <mailto:{address}?subject=unsubscribe%20{quoted}>"


def feedback_id(settings: Settings, issue_number: int | None, kind: str = "issue") -> str:
    campaign = f"issue{issue_number}" if issue_number is not None else kind
    return f"{campaign}:{kind}:{settings.effective_list_id}:gts"


@lru_cache(maxsize=64)
def _message_id_seed(secret: str, issue_id: int, frozen_at):
    """SHA-256 state after the part of the seed shared by a whole send."""
    return hashlib.sha256(f"{secret}|{issue_id}|{frozen_at.isoformat() if frozen_at else ''}|".encode())


def issue_message_id(settings: Settings, *, issue_id: int, frozen_at, delivery_id: int) -> str:
    state = _message_id_seed(settings.secret_key, issue_id, frozen_at).copy()
    state.update(str(delivery_id).encode("ascii"))
    digest = state.hexdigest()[:20]
    domain = _constants(settings.mail_from, settings.effective_list_id)[2]
    return f"<gts.{issue_id}.{delivery_id}.{digest}@{domain}>"


def build_issue_message(
    settings: Settings,
    personalised,
    *,
    delivery,
    issue=None,
    kind: str = "issue",
    to_name: str | None = None,
) -> OutgoingMessage:
    """``personalised`` is ``rendering.personalise.Personalised``; ``delivery``
    anything with ``id`` and ``email`` (a Delivery row or a claimed batch row;
    ``name`` and ``issue_number`` are used when present). Test sends pass
    ``delivery`` with ``id=None``: no VERP, a random Message-ID."""
    delivery_id = getattr(delivery, "id", None)
    bodies = personalised.bodies
    issue_number = getattr(delivery, "issue_number", None) or getattr(issue, "number", None)
    headers = {
        "List-Id": list_id(settings),
        "List-Unsubscribe": list_unsubscribe(settings, personalised.unsubscribe_url),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Feedback-ID": feedback_id(settings, issue_number, kind),
        "Auto-Submitted": "auto-generated",
        "Precedence": "bulk",
    }
    message_id = ""
    if delivery_id is not None and issue is not None:
        message_id = issue_message_id(
            settings, issue_id=issue.id, frozen_at=issue.frozen_at, delivery_id=delivery_id
        )
    metadata = {}
    if delivery_id is not None:
        metadata["delivery_id"] = str(delivery_id)
    if issue_number is not None:
        metadata["issue"] = str(issue_number)
    return OutgoingMessage(
        sender=settings.mail_from,
        to=delivery.email,
        to_name=to_name if to_name is not None else getattr(delivery, "name", "") or "",
        subject=personalised.subject,
        # joined only if a transport reads them (the HTTP APIs); SMTP sends the pre-encoded bodies
        text=bodies.text if bodies is not None else personalised.text,
        html=bodies.html if bodies is not None else personalised.html,
        bodies=bodies,
        headers=headers,
        message_id=message_id,
        return_path=verp_address(settings, delivery_id) if delivery_id is not None else "",
        kind=kind,
        delivery_id=delivery_id,
        metadata=metadata,
        merge_fields=_merge_fields(
            personalised, headers["List-Unsubscribe"], getattr(delivery, "name", "") or ""
        ),
    )


def _merge_fields(personalised, list_unsubscribe_value: str, name: str) -> dict[str, str]:
    """The per-recipient values of this message, so batch APIs (SendGrid,
    Mailgun) can send one body with tags to many readers. If the renderer's
    greeting changes shape, grouping only gets smaller: transports check that
    putting the values back gives each message exactly."""

    hello = greeting(name)
    return {
        "unsubscribe": personalised.unsubscribe_url,
        "preferences": personalised.preferences_url,
        "list_unsubscribe": list_unsubscribe_value,
        "greeting": hello,
        "greeting_html": escape(hello),
    }
