"""What every provider module shares: the refusal, the verified result and
the checks of timestamps.

A provider module exposes ``verify(body, headers, settings, *, fetch, cache)
-> Verified``: it authenticates the request first and only then reads the
events out of it. Anything doubtful raises ``WebhookRefused`` and nothing
is written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from newsletter import clock
from newsletter.config import Settings

HARD = "hard"
SOFT = "soft"
COMPLAINT = "complaint"


class WebhookRefused(Exception):
    """The request is not provably from the provider (401/403) or is malformed (400)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FeedbackItem:
    """One bounce or complaint read out of a verified provider event."""

    kind: str  # hard | soft | complaint
    email: str | None = None
    provider_message_id: str | None = None
    detail: str = ""
    event_id: str | None = None  # the provider's id of this event: applied once, however often it arrives


@dataclass
class Verified:
    """What a provider module verified. ``replay_token`` names what was
    *signed* (the digest of the signed bytes, or an id inside them), never
    the signature: a signature can be re-encoded (base64 slack bits) or, for
    ECDSA, rewritten into a second valid one, and neither may count as new."""

    items: list[FeedbackItem] = field(default_factory=list)
    replay_token: str | None = None  # stored in WebhookReplay; a second use is refused
    confirm_url: str | None = None  # SNS subscription confirmation to fetch
    ignored: int = 0  # verified events that are not bounces or complaints

    def add(self, item: FeedbackItem | None) -> None:
        """Keep a bounce or complaint; count anything else as ignored."""
        if item is None:
            self.ignored += 1
        else:
            self.items.append(item)


def signed_digest(*parts: bytes) -> str:
    """The replay token of a request: a digest of exactly the bytes its signature covers."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return "signed:" + digest.hexdigest()


def event_id(value) -> str | None:
    """A provider's event id as stored (bounded, printable), or None."""
    shown = text(value, 150)
    return shown or None


def secret(settings: Settings, name: str) -> str:
    """A configured webhook secret; a provider without one refuses everything."""
    value = (settings.webhook_secrets or {}).get(name, "")
    if not value:
        raise WebhookRefused(403, f"webhook not configured: set NEWSLETTER_{name.upper()}")
    return value


def header(headers, name: str) -> str:
    value = headers.get(name)
    return value.strip() if value else ""


def check_timestamp(settings: Settings, raw: str | int | float) -> None:
    """Refuse a signed timestamp outside the tolerance window (a replay of an
    old, genuinely signed request, or a clock far off)."""
    try:
        stamp = int(str(raw).strip())
    except (TypeError, ValueError):
        raise WebhookRefused(401, "missing or malformed timestamp") from None
    skew = abs(clock.now().timestamp() - stamp)
    if skew > settings.webhook_tolerance_seconds:
        raise WebhookRefused(403, "stale timestamp")


def same(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)


def parse_json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookRefused(400, "body is not JSON") from None


def text(value, limit: int = 300) -> str:
    """A provider string, made safe to store (the provider is authenticated,
    but its fields still come from remote mail servers)."""
    if value is None:
        return ""
    return " ".join(str(value).split())[:limit]
