"""SendGrid (Twilio) Event Webhook, signed with ECDSA P-256.

SendGrid signs ``timestamp + raw body`` with its private key (SHA-256) and
sends the base64 DER signature in ``X-Twilio-Email-Event-Webhook-Signature``
and the timestamp in ``X-Twilio-Email-Event-Webhook-Timestamp``. The
verification key shown under Mail Settings is a base64 DER public key
(``NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY``; PEM is accepted too).

Events: ``bounce`` (``type`` bounce = hard, blocked = soft), ``dropped``
(SendGrid refused to send: a bounced or invalid address is hard, a spam
reporter is a complaint) and ``spamreport``.

Replays are recognised by what was signed (timestamp and body), and each
event by its ``sg_event_id``.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.config import Settings
from newsletter.feedback.webhooks.base import (
    COMPLAINT,
    HARD,
    SOFT,
    FeedbackItem,
    Verified,
    WebhookRefused,
    check_timestamp,
    event_id,
    header,
    parse_json,
    secret,
    signed_digest,
    text,
)

# NEWSLETTER_<NAME> variables this provider's verification needs
SECRETS = ("sendgrid_webhook_public_key",)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DROPPED_HARD = {"bounced address", "invalid", "invalid address"}
DROPPED_COMPLAINT = {"spam reporting address"}


def load_public_key(raw: str) -> ec.EllipticCurvePublicKey:
    raw = raw.strip()
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(raw.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(raw))
    except (ValueError, binascii.Error) as exc:
        raise WebhookRefused(
            403, f"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused(403, "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key")
    return key


def verify(body: bytes, headers, settings: Settings, **_) -> Verified:
    key = load_public_key(secret(settings, "sendgrid_webhook_public_key"))
    signature = header(headers, SIGNATURE_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookRefused(401, "unsigned request")
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode("utf-8") + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused(403, "bad signature") from None
    check_timestamp(settings, timestamp)
    events = parse_json(body)
    if not isinstance(events, list):
        raise WebhookRefused(400, "expected a list of events")
    # Keyed on what was signed: an ECDSA signature has a second valid form
    # (s → n − s) and base64 has slack bits, so the signature cannot be the key.
    result = Verified(replay_token=signed_digest(timestamp.encode("utf-8"), body))
    for event in events:
        item = _item(event) if isinstance(event, dict) else None
        if item is None:
            result.ignored += 1
        else:
            result.items.append(item)
    return result


def _item(event: dict) -> FeedbackItem | None:
    name = str(event.get("event", ""))
    reason = text(event.get("reason") or event.get("response") or "")
    common = dict(
        email=text(event.get("email"), 320) or None,
        provider_message_id=text(event.get("sg_message_id"), 300) or None,
        event_id=event_id(event.get("sg_event_id")),
    )
    if name == "bounce":
        kind = SOFT if str(event.get("type", "bounce")) == "blocked" else HARD
        return FeedbackItem(kind=kind, detail=text(f"{event.get('status', '')} {reason}"), **common)
    if name == "spamreport":
        return FeedbackItem(kind=COMPLAINT, detail="spamreport", **common)
    if name == "dropped":
        why = reason.lower()
        if why in DROPPED_HARD:
            return FeedbackItem(kind=HARD, detail=f"dropped: {reason}", **common)
        if why in DROPPED_COMPLAINT:
            return FeedbackItem(kind=COMPLAINT, detail=f"dropped: {reason}", **common)
    return None
