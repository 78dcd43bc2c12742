"""Provider webhooks: verify, then apply the policy, in one transaction.

``handle(settings, provider, body, headers, fetch=…, cache=…)`` is what the
view calls. It refuses oversized bodies, lets the provider module verify the
request (nothing is read from an unverified body beyond what verification
needs), claims the replay token (what was signed, never the signature),
skips events whose provider id was seen before, and records each bounce or
complaint through ``feedback.service`` — all in one unit of work, so a
refused or failing request changes nothing.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType

import requests
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from newsletter import clock, db
from newsletter.config import Settings
from newsletter.feedback import service
from newsletter.feedback.webhooks.base import COMPLAINT, HARD, WebhookRefused
from newsletter.models import WebhookReplay

log = logging.getLogger("newsletter.feedback")


def _providers() -> dict[str, ModuleType]:
    """Every module of this package but ``base`` is a provider, named as in
    ``/webhooks/<provider>``, with ``verify`` and its ``SECRETS``: adding a
    provider is adding a module."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")
    return {name: importlib.import_module(f"{__name__}.{name}") for name in names}


PROVIDERS = _providers()


MAX_FETCH_BYTES = 64 * 1024  # an SNS signing certificate or confirmation answer
REPLAY_KEEP = timedelta(days=7)  # far longer than any accepted timestamp window
_PRUNE_EVERY = 600.0
_pruned_at = 0.0
_prune_lock = threading.Lock()


@dataclass
class WebhookResult:
    status: int
    body: dict


def default_fetch(url: str) -> bytes:
    """GET over https with certificate checks, no redirects, small bodies only."""

    response = requests.get(url, timeout=10, allow_redirects=False, stream=True)
    response.raise_for_status()
    data = response.raw.read(MAX_FETCH_BYTES + 1, decode_content=True)
    response.close()
    return data


def _claim(session, provider: str, token: str) -> bool:
    """Record ``token`` as seen; False when it was seen before."""
    exists = session.exec(
        select(WebhookReplay.id).where(WebhookReplay.provider == provider, WebhookReplay.token == token)
    ).first()
    if exists is not None:
        return False
    session.add(WebhookReplay(provider=provider, token=token[:200]))
    session.flush()
    return True


def prune_replays(older_than: timedelta = REPLAY_KEEP) -> int:
    """Forget replay tokens older than any timestamp we would still accept."""
    with db.session_scope() as session:
        return session.execute(
            delete(WebhookReplay).where(WebhookReplay.created_at < clock.now() - older_than)
        ).rowcount


def _maybe_prune() -> None:
    """At most every ten minutes per process, so the table stays small without a job."""
    global _pruned_at
    with _prune_lock:
        if time.monotonic() - _pruned_at < _PRUNE_EVERY:
            return
        _pruned_at = time.monotonic()
    prune_replays()


def _confirm(fetch, url: str) -> None:
    try:
        fetch(url)
    except Exception as exc:  # noqa: BLE001 - reported to SNS, which retries
        raise WebhookRefused(502, f"could not confirm the subscription: {exc.__class__.__name__}") from None


def handle(
    settings: Settings, provider: str, body: bytes, headers, *, fetch=None, cache=None
) -> WebhookResult:
    module = PROVIDERS.get(provider)
    if module is None:
        return WebhookResult(404, {"error": "not found", "message": f"unknown provider {provider!r}"})
    if len(body) > settings.webhook_max_bytes:
        return WebhookResult(413, {"error": "too large", "message": "webhook body too large"})
    try:
        verified = module.verify(
            body, headers, settings, fetch=fetch or default_fetch, cache=cache if cache is not None else {}
        )
        summary = {"accepted": 0, "matched": 0, "suppressed": 0, "ignored": verified.ignored}
        with db.session_scope() as session:
            if verified.replay_token and not _claim(session, provider, verified.replay_token):
                raise WebhookRefused(403, "replayed request")
            items = [
                i
                for i in verified.items
                if not i.event_id or _claim(session, provider, "event:" + i.event_id)
            ]
            summary["duplicates"] = len(verified.items) - len(items)
            deliveries = service.find_deliveries_by_provider_ids(
                session, [item.provider_message_id for item in items]
            )
            for item in items:
                outcome = _apply(
                    session, settings, provider, item, deliveries.get(item.provider_message_id or "")
                )
                summary["accepted"] += 1
                summary["matched"] += int(
                    outcome.subscriber_id is not None or outcome.delivery_id is not None
                )
                summary["suppressed"] += int(outcome.suppressed)
            if verified.confirm_url:
                # confirm only after every check passed; a failed fetch rolls back
                # the replay claim so SNS's retry of the confirmation is accepted
                _confirm(fetch or default_fetch, verified.confirm_url)
                summary["confirmed"] = True
    except WebhookRefused as refused:
        log.warning("webhook %s refused: %s", provider, refused.message)
        return WebhookResult(refused.status, {"error": "refused", "message": refused.message})
    except IntegrityError:  # two deliveries of the same replay token raced
        log.warning("webhook %s refused: replay race", provider)
        return WebhookResult(403, {"error": "refused", "message": "replayed request"})
    _maybe_prune()
    return WebhookResult(200, {"ok": True, **summary})


def _apply(session, settings, provider, item, delivery):
    email = None if delivery is not None else item.email
    if item.kind == COMPLAINT:
        return service.record_complaint(
            session, delivery=delivery, email=email, provider=provider, detail=item.detail
        )
    return service.record_bounce(
        session,
        settings,
        delivery=delivery,
        email=email,
        provider=provider,
        hard=item.kind == HARD,
        detail=item.detail,
    )


def declared_secrets() -> dict[str, tuple[str, ...]]:
    """The secrets each provider names (for the settings page and ``doctor``)."""
    return {name: module.SECRETS for name, module in PROVIDERS.items()}


__all__ = [
    "PROVIDERS",
    "WebhookRefused",
    "WebhookResult",
    "declared_secrets",
    "default_fetch",
    "handle",
    "prune_replays",
]
