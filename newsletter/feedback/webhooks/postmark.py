"""Postmark: Bounce and SpamComplaint webhooks.

Postmark does not sign its webhooks; it supports HTTP basic auth written into
the webhook URL (``https://USER:PASSWORD@example.org/webhooks/postmark``).
We compare both parts in constant time. The bounce ``Type`` is classified
with Postmark's list of bounce types: permanent ones are hard bounces,
temporary ones soft, and notices that are not bounces (auto-replies,
address changes, …) are ignored.
"""

from __future__ import annotations

import base64
import binascii

from newsletter.config import Settings
from newsletter.feedback.webhooks.base import (
    COMPLAINT,
    HARD,
    SOFT,
    FeedbackItem,
    Verified,
    WebhookRefused,
    header,
    parse_json,
    same,
    secret,
    signed_digest,
    text,
)

# NEWSLETTER_<NAME> variables this provider's verification needs
SECRETS = ("postmark_webhook_user", "postmark_webhook_password")

# https://postmarkapp.com/developer/api/bounce-api#bounce-types
HARD_TYPES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
SOFT_TYPES = {"SoftBounce", "Transient", "DnsError", "Blocked", "SpamNotification", "DMARCPolicy", "Unknown"}
COMPLAINT_TYPES = {"SpamComplaint"}
# Everything else (AutoResponder, AddressChange, Subscribe, Unsubscribe,
# ChallengeVerification, VirusNotification, OpenRelayTest, Unconfirmed,
# SMTPApiError, InboundError, TemplateRenderingFailed) is not about the address.


def _credentials(headers) -> tuple[str, str]:
    auth = header(headers, "Authorization")
    if not auth.lower().startswith("basic "):
        raise WebhookRefused(401, "basic auth required")
    try:
        user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise WebhookRefused(401, "malformed basic auth") from None
    return user, password


def verify(body: bytes, headers, settings: Settings, **_) -> Verified:
    want_user = secret(settings, "postmark_webhook_user")
    want_password = secret(settings, "postmark_webhook_password")
    user, password = _credentials(headers)
    # evaluate both comparisons so the timing does not tell which part was wrong
    if not (same(user, want_user) & same(password, want_password)):
        raise WebhookRefused(403, "wrong credentials")
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "expected one Postmark record")
    record = str(payload.get("RecordType", ""))
    kind_name = str(payload.get("Type", ""))
    # Unsigned (basic auth only): the record's own id is the replay key, or
    # the body's digest when it has none.
    record_id = text(payload.get("ID"), 150)
    result = Verified(replay_token=f"{record}:{record_id}" if record_id else signed_digest(body))
    if record == "SpamComplaint" or kind_name in COMPLAINT_TYPES:
        kind = COMPLAINT
    elif record == "Bounce" and kind_name in HARD_TYPES:
        kind = HARD
    elif record == "Bounce" and kind_name in SOFT_TYPES:
        kind = SOFT
    else:
        result.ignored = 1
        return result
    result.items.append(
        FeedbackItem(
            kind=kind,
            email=text(payload.get("Email"), 320) or None,
            provider_message_id=text(payload.get("MessageID"), 300) or None,
            detail=text(f"{kind_name}: {payload.get('Description') or ''} {payload.get('Details') or ''}"),
        )
    )
    return result
