"""Amazon SES notifications delivered by Amazon SNS.

SNS signs each message with an RSA key whose certificate it publishes at
``SigningCertURL``. We verify, in this order, before anything changes:

1. the ``TopicArn`` is on our allowlist (``NEWSLETTER_SES_SNS_TOPICS``);
2. ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com/….pem`` — any
   other host is refused *before* anything is fetched, so a forged message
   cannot point us at a certificate of its own;
3. the signature (``SignatureVersion`` 1 = SHA1withRSA, 2 = SHA256withRSA)
   over the canonical string AWS documents for the message type;
4. the ``Timestamp`` is recent, and the ``MessageId`` is new (replays refused).

A ``SubscriptionConfirmation`` is confirmed by fetching its ``SubscribeURL``,
again only on an SNS host. Certificates are cached per app.

The fetcher (``fetch(url) -> bytes``) is a parameter so tests can hand over
the certificate they generated; the host checks above run regardless.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter import clock
from newsletter.config import Settings
from newsletter.feedback.webhooks.base import (
    COMPLAINT,
    HARD,
    SOFT,
    FeedbackItem,
    Verified,
    WebhookRefused,
    parse_json,
    secret,
    text,
)

# NEWSLETTER_<NAME> variables this provider's verification needs
SECRETS = ("ses_sns_topics",)

SNS_HOST = re.compile(r"^sns\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com(\.cn)?$")
MAX_AGE = timedelta(hours=1)  # SNS retries a delivery for up to an hour by default
MAX_CERT_BYTES = 64 * 1024
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_cache_lock = threading.Lock()


def is_sns_url(url: str, *, pem: bool = False) -> bool:
    """True only for https://sns.<region>.amazonaws.com/… (no userinfo, no port)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username or parts.password or parts.port not in (None, 443):
        return False
    if not SNS_HOST.match(parts.hostname or "") or parts.netloc.lower() != (parts.hostname or ""):
        return False
    return parts.path.endswith(".pem") if pem else True


def string_to_sign(message: dict) -> bytes:
    kind = message.get("Type")
    if kind not in SIGNED_FIELDS:
        raise WebhookRefused(400, "unknown SNS message type")
    lines = []
    for name in SIGNED_FIELDS[kind]:
        if name == "Subject" and message.get("Subject") is None:
            continue
        value = message.get(name)
        if not isinstance(value, str):
            raise WebhookRefused(401, f"SNS message without {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def _public_key(url: str, fetch, cache: dict) -> rsa.RSAPublicKey:
    with _cache_lock:
        key = cache.get(url)
    if key is not None:
        return key
    try:
        pem = fetch(url)
    except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal
        raise WebhookRefused(403, f"cannot fetch the SNS certificate: {exc.__class__.__name__}") from None
    if not pem or len(pem) > MAX_CERT_BYTES:
        raise WebhookRefused(403, "SNS certificate missing or too large")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise WebhookRefused(403, "SNS certificate is not a PEM certificate") from None
    now = clock.now()
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise WebhookRefused(403, "SNS certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused(403, "SNS certificate does not hold an RSA key")
    with _cache_lock:
        if len(cache) > 32:
            cache.clear()
        cache[url] = key
    return key


def _check_signature(message: dict, fetch, cache: dict) -> None:
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise WebhookRefused(401, "unsupported SignatureVersion")
    cert_url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    if not is_sns_url(cert_url, pem=True):
        raise WebhookRefused(403, "SigningCertURL is not on an SNS host")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except binascii.Error:
        raise WebhookRefused(403, "malformed signature") from None
    if not signature:
        raise WebhookRefused(401, "unsigned message")
    data = string_to_sign(message)
    key = _public_key(cert_url, fetch, cache)
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookRefused(403, "bad signature") from None


def _check_age(message: dict) -> None:
    raw = str(message.get("Timestamp", ""))
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRefused(401, "malformed Timestamp") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    age = clock.now() - stamp
    if age > MAX_AGE or age < -timedelta(minutes=5):
        raise WebhookRefused(403, "stale message")


def verify(body: bytes, headers, settings: Settings, *, fetch, cache: dict, **_) -> Verified:
    topics = {t.strip() for t in secret(settings, "ses_sns_topics").split(",") if t.strip()}
    message = parse_json(body)
    if not isinstance(message, dict):
        raise WebhookRefused(400, "expected an SNS message")
    if message.get("TopicArn") not in topics:
        raise WebhookRefused(403, "topic not allowed")
    _check_signature(message, fetch, cache)
    _check_age(message)
    message_id = text(message.get("MessageId"), 190)
    result = Verified(replay_token=message_id or None)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not is_sns_url(url):
            raise WebhookRefused(403, "SubscribeURL is not on an SNS host")
        result.confirm_url = url
        return result
    if kind != "Notification":
        result.ignored = 1
        return result
    try:
        notification = json.loads(message["Message"])
    except ValueError:
        result.ignored = 1
        return result
    if isinstance(notification, dict):
        result.items.extend(_items(notification))
    if not result.items:
        result.ignored = 1
    return result


def _items(notification: dict) -> list[FeedbackItem]:
    name = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    message_id = text(mail.get("messageId"), 300) or None
    items: list[FeedbackItem] = []
    if name == "Bounce" and isinstance(notification.get("bounce"), dict):
        bounce = notification["bounce"]
        kind = HARD if bounce.get("bounceType") == "Permanent" else SOFT
        for rcpt in bounce.get("bouncedRecipients") or []:
            if isinstance(rcpt, dict):
                detail = text(
                    f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')} {rcpt.get('status', '')} "
                    f"{rcpt.get('diagnosticCode', '')}"
                )
                items.append(
                    FeedbackItem(
                        kind=kind,
                        email=text(rcpt.get("emailAddress"), 320) or None,
                        provider_message_id=message_id,
                        detail=detail,
                    )
                )
    elif name == "Complaint" and isinstance(notification.get("complaint"), dict):
        complaint = notification["complaint"]
        for rcpt in complaint.get("complainedRecipients") or []:
            if isinstance(rcpt, dict):
                items.append(
                    FeedbackItem(
                        kind=COMPLAINT,
                        email=text(rcpt.get("emailAddress"), 320) or None,
                        provider_message_id=message_id,
                        detail=text(f"complaint {complaint.get('complaintFeedbackType', '')}"),
                    )
                )
    return items
