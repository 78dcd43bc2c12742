"""Resend webhooks, signed by Svix.

Svix signs ``{svix-id}.{svix-timestamp}.{raw body}`` with HMAC-SHA256; the key
is the base64 part of the ``whsec_…`` signing secret
(``NEWSLETTER_RESEND_WEBHOOK_SECRET``). ``svix-signature`` is a space-separated
list of ``v1,<base64>`` (several during a secret rotation); one match is
enough. Timestamps outside the tolerance are refused and each ``svix-id`` is
accepted once.

Events: ``email.bounced`` (``data.bounce.type`` Permanent = hard, Transient =
soft; hard when absent, as Resend documents the event as a permanent
rejection) and ``email.complained``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from newsletter.config import Settings
from newsletter.feedback.webhooks.base import (
    COMPLAINT,
    HARD,
    SOFT,
    FeedbackItem,
    Verified,
    WebhookRefused,
    check_timestamp,
    header,
    parse_json,
    same,
    secret,
    text,
)

# NEWSLETTER_<NAME> variables this provider's verification needs
SECRETS = ("resend_webhook_secret",)


def _key(raw: str) -> bytes:
    raw = raw.strip()
    if raw.startswith("whsec_"):
        raw = raw[len("whsec_") :]
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise WebhookRefused(403, "NEWSLETTER_RESEND_WEBHOOK_SECRET is not a whsec_… secret") from None


def sign(secret_value: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,…`` signature Svix computes (used by verify, and by tests)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret_value), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(body: bytes, headers, settings: Settings, **_) -> Verified:
    secret_value = secret(settings, "resend_webhook_secret")
    msg_id = header(headers, "svix-id") or header(headers, "webhook-id")
    timestamp = header(headers, "svix-timestamp") or header(headers, "webhook-timestamp")
    signatures = header(headers, "svix-signature") or header(headers, "webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookRefused(401, "unsigned request")
    expected = sign(secret_value, msg_id, timestamp, body)
    ok = False
    for candidate in signatures.split():
        if candidate.startswith("v1,") and same(candidate, expected):
            ok = True
    if not ok:
        raise WebhookRefused(403, "bad signature")
    check_timestamp(settings, timestamp)
    if len(msg_id) > 190:
        raise WebhookRefused(400, "svix-id too long")
    payload = parse_json(body)
    result = Verified(replay_token=msg_id)
    result.add(_item(payload) if isinstance(payload, dict) else None)
    return result


def _item(payload: dict) -> FeedbackItem | None:
    name = str(payload.get("type", ""))
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    to = data.get("to")
    email = to[0] if isinstance(to, list) and to else to
    common = dict(email=text(email, 320) or None, provider_message_id=text(data.get("email_id"), 300) or None)
    if name == "email.complained":
        return FeedbackItem(kind=COMPLAINT, detail="complained", **common)
    if name == "email.bounced":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        kind = SOFT if str(bounce.get("type", "")).lower() == "transient" else HARD
        detail = text(f"{bounce.get('type', '')} {bounce.get('subType', '')} {bounce.get('message', '')}")
        return FeedbackItem(kind=kind, detail=detail, **common)
    return None
