"""Outgoing webhooks: ``issue.sent``, ``issue.failed``, ``subscriber.confirmed``,
``subscriber.unsubscribed``, POSTed as JSON to the endpoints an admin
configured, signed, and delivered durably.

Durable by riding the transactional mail queue: ``emit`` writes one queue row
(kind ``webhook``) per endpoint in the caller's transaction (the event and
its deliveries commit or roll back together); the mail sender claims it with
a lease, ``post`` delivers it, and the queue's own ``record`` keeps the
outcome, retries with backoff up to ``NEWSLETTER_MAX_ATTEMPTS``, and shows it
in the delivery log. Nothing here knows about leases or backoff.

The signature (documented in docs/api.md#webhooks): header
``Signal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
A receiver recomputes it over the raw body, compares in constant time, and
refuses timestamps older than a few minutes (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid

from sqlmodel import Session, select

from newsletter import clock
from newsletter.delivery import transactional
from newsletter.delivery.transports import SendResult
from newsletter.models import WEBHOOK_EVENTS, WebhookEndpoint

KIND = "webhook"
SIGNATURE_HEADER = "Signal-Signature"
TIMEOUT = 10.0
SECRET_PREFIX = "whsec_"


class WebhookError(ValueError):
    """A refused endpoint (bad URL or events); the message says why."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = 300) -> bool:
    """What a receiver does (and what the tests do): the signature matches and is fresh."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def create_endpoint(session: Session, *, url: str, events, created_by: str = "") -> WebhookEndpoint:
    url = (url or "").strip()
    if (
        not url.lower().startswith(("https://", "http://"))
        or len(url) > 2000
        or any(c.isspace() for c in url)
    ):
        raise WebhookError("the URL must be an absolute http(s) URL without spaces")
    chosen = [e for e in WEBHOOK_EVENTS if e in set(events)]
    unknown = set(events) - set(WEBHOOK_EVENTS)
    if unknown or not chosen:
        raise WebhookError(f"choose events among {', '.join(WEBHOOK_EVENTS)}")
    row = WebhookEndpoint(
        url=url,
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        events=",".join(chosen),
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def emit(session, event: str, data: dict) -> int:
    """Queue ``event`` for every active endpoint that wants it, in the caller's transaction."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    endpoints = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))).all()
    count = 0
    for endpoint in endpoints:
        if event not in endpoint.event_list:
            continue
        payload = {
            "id": uuid.uuid4().hex,
            "event": event,
            "created_at": clock.now().isoformat(),
            "data": data,
        }
        transactional.enqueue(
            session,
            kind=KIND,
            to="",
            subject=event,
            template=KIND,
            context={"endpoint_id": endpoint.id, "payload": payload},
        )
        count += 1
    return count


def post(session_factory, rows) -> dict[int, SendResult]:
    """Deliver claimed webhook rows: 2xx is delivered; anything else (and no
    answer) is transient, so the queue retries it with backoff; an endpoint
    removed meanwhile is a permanent failure."""
    import requests  # (here: every send emits events, few processes post them; 60 ms of imports)

    results: dict[int, SendResult] = {}
    with session_factory() as session:
        endpoints = {e.id: (e.url, e.secret, e.active) for e in session.exec(select(WebhookEndpoint)).all()}
    for row in rows:
        context = json.loads(row.context or "{}")
        endpoint = endpoints.get(context.get("endpoint_id"))
        if endpoint is None or not endpoint[2]:
            results[row.id] = SendResult("rejected", error="the endpoint was removed or turned off")
            continue
        url, secret, _ = endpoint
        body = json.dumps(context.get("payload", {}), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "get-the-signal-webhooks",
            "Signal-Event": row.subject,
            "Signal-Delivery": str(row.id),
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        }
        try:
            answer = requests.post(url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            results[row.id] = SendResult("transient", error=f"no answer: {type(exc).__name__}")
            continue
        if 200 <= answer.status_code < 300:
            results[row.id] = SendResult("sent", provider_message_id=f"HTTP {answer.status_code}")
        else:
            results[row.id] = SendResult("transient", error=f"HTTP {answer.status_code}")
    return results


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.exec(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def remove_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Remove an endpoint; its queued deliveries fail with the reason (nothing more is sent)."""
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise LookupError(f"there is no webhook {endpoint_id}")
    session.delete(row)
    return row
