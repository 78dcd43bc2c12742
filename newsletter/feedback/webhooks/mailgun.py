"""Mailgun webhooks, signed with HMAC-SHA256 over ``timestamp + token``.

The JSON body carries ``signature: {timestamp, token, signature}`` and
``event-data``. The key is the account's HTTP webhook signing key
(``NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY``). Mailgun's advice is followed
to the letter: stale timestamps are refused and each signed
``timestamp + token`` is accepted once (stored in ``WebhookReplay``), and
each event once by its ``id``.

Events: ``failed`` with ``severity`` permanent (hard) or temporary (soft),
``complained``.
"""

from __future__ import annotations

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
    event_id,
    parse_json,
    same,
    secret,
    signed_digest,
    text,
)

# NEWSLETTER_<NAME> variables this provider's verification needs
SECRETS = ("mailgun_webhook_signing_key",)


def verify(body: bytes, headers, settings: Settings, **_) -> Verified:
    key = secret(settings, "mailgun_webhook_signing_key")
    payload = parse_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("signature"), dict):
        raise WebhookRefused(401, "unsigned request")
    sig = payload["signature"]
    timestamp, token, signature = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and signature):
        raise WebhookRefused(401, "unsigned request")
    expected = hmac.new(key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not same(expected, signature.lower()):
        raise WebhookRefused(403, "bad signature")
    check_timestamp(settings, timestamp)
    if len(token) > 190:
        raise WebhookRefused(400, "token too long")
    result = Verified(replay_token=signed_digest((timestamp + token).encode("utf-8")))
    event = payload.get("event-data")
    result.add(_item(event) if isinstance(event, dict) else None)
    return result


def _item(event: dict) -> FeedbackItem | None:
    name = str(event.get("event", ""))
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    common = dict(
        email=text(event.get("recipient"), 320) or None,
        provider_message_id=text(headers.get("message-id"), 300) or None,
        event_id=event_id(event.get("id")),
    )
    if name == "complained":
        return FeedbackItem(kind=COMPLAINT, detail="complained", **common)
    if name == "failed":
        status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
        detail = text(
            f"{status.get('code', '')} {status.get('description') or status.get('message') or ''} "
            f"{event.get('reason', '')}"
        )
        severity = str(event.get("severity", ""))
        if severity == "permanent":
            return FeedbackItem(kind=HARD, detail=detail, **common)
        if severity == "temporary":
            return FeedbackItem(kind=SOFT, detail=detail, **common)
    return None
