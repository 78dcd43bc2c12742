"""The bounce and complaint policy, in one place.

Every source of feedback — provider webhooks, the DSN bounce mailbox and the
delivery engine's permanent SMTP/ESP failures — calls ``record_bounce`` or
``record_complaint``. They write one ``Event`` row and apply the policy:

* hard bounce: the subscriber becomes ``bounced`` and the address is
  suppressed (reason ``hard_bounce``);
* soft bounce: counted; after ``Settings.soft_bounce_limit`` soft bounces
  within ``Settings.soft_bounce_days`` the subscriber becomes ``bounced``
  and the address is suppressed (reason ``soft_bounce``);
* complaint: the subscriber becomes ``complained`` and the address is
  suppressed (reason ``complaint``).

Suppression lives in its own table keyed by the address hash, so it
survives deleting the subscriber and refuses a later re-import.

The functions take a session and never commit: the caller's unit of work
decides, so a webhook that fails half-way changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter import clock
from newsletter.config import Settings
from newsletter.models import Delivery, Event, Subscriber
from newsletter.suppression import email_hash, suppress

KIND_HARD = "bounce_hard"
KIND_SOFT = "bounce_soft"
KIND_COMPLAINT = "complaint"


@dataclass
class FeedbackOutcome:
    """What one piece of feedback did (for logs, webhook replies and tests)."""

    kind: str
    subscriber_id: int | None = None
    delivery_id: int | None = None
    event_id: int | None = None
    suppressed: bool = False
    duplicate: bool = False  # the same delivery already had this kind of event
    matched: bool = True  # False when neither a delivery nor an address was known

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "subscriber_id": self.subscriber_id,
            "delivery_id": self.delivery_id,
            "suppressed": self.suppressed,
            "duplicate": self.duplicate,
            "matched": self.matched,
        }


# --- finding what the feedback is about ---------------------------------------


def _id_variants(provider_message_id: str) -> list[str]:
    """Forms one message id takes across a provider's send reply and its events.

    Mailgun answers a send with ``<id@domain>`` but reports ``id@domain``;
    SendGrid's events carry ``<X-Message-Id>.filterNNNN…``; others are exact.
    """
    raw = provider_message_id.strip()
    bare = raw.strip("<>")
    variants = [raw, bare, f"<{bare}>"]
    if ".filter" in bare:
        prefix = bare.split(".filter", 1)[0]
        variants += [prefix, f"<{prefix}>"]
    seen: list[str] = []
    for v in variants:
        if v and v not in seen:
            seen.append(v)
    return seen


def find_delivery_by_provider_id(session: Session, provider_message_id: str | None) -> Delivery | None:
    """The delivery a provider event is about, by the id the provider gave us
    when it accepted the message (``Delivery.provider_message_id``, indexed)."""
    return find_deliveries_by_provider_ids(session, [provider_message_id]).get(provider_message_id or "")


def find_deliveries_by_provider_ids(session: Session, ids) -> dict[str, Delivery]:
    """Many at once (one query for a whole webhook batch): {given id: delivery}."""
    wanted: dict[str, str] = {}
    for given in ids:
        if given and len(given) <= 300:
            for variant in _id_variants(given):
                wanted.setdefault(variant, given)
    if not wanted:
        return {}
    found: dict[str, Delivery] = {}
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        for row in session.exec(
            select(Delivery).where(Delivery.provider_message_id.in_(keys[start : start + 500]))
        ):
            found.setdefault(wanted[row.provider_message_id], row)
    return found


def find_subscriber_by_email(session: Session, email: str | None) -> Subscriber | None:
    if not email:
        return None
    return session.exec(select(Subscriber).where(Subscriber.email_hash == email_hash(email))).first()


def _resolve(
    session: Session, delivery: Delivery | None, email: str | None
) -> tuple[Subscriber | None, str | None]:
    subscriber = session.get(Subscriber, delivery.subscriber_id) if delivery is not None else None
    if subscriber is None:
        subscriber = find_subscriber_by_email(session, email or (delivery.email if delivery else None))
    address = (
        (delivery.email if delivery is not None else None)
        or email
        or (subscriber.email if subscriber else None)
    )
    return subscriber, address


def _already(session: Session, kind: str, delivery: Delivery | None) -> bool:
    """One event of a kind per delivery: the same bounce reported by the
    webhook and by the DSN mailbox counts once."""
    if delivery is None or delivery.id is None:
        return False
    # filtered by the (indexed) subscriber first: a reader has few events
    return (
        session.exec(
            select(Event.id).where(
                Event.subscriber_id == delivery.subscriber_id,
                Event.kind == kind,
                Event.delivery_id == delivery.id,
            )
        ).first()
        is not None
    )


def _event(session, kind, subscriber, delivery, provider, detail) -> Event:
    row = Event(
        kind=kind,
        subscriber_id=subscriber.id if subscriber else (delivery.subscriber_id if delivery else None),
        issue_id=delivery.issue_id if delivery else None,
        delivery_id=delivery.id if delivery else None,
        provider=(provider or "")[:30],
        detail=(detail or "")[:1000],
    )
    session.add(row)
    session.flush()
    return row


def _set_status(subscriber: Subscriber | None, status: str) -> None:
    if subscriber is None:
        return
    if subscriber.status == "complained" and status == "bounced":
        return  # a complaint is the stronger signal; keep it
    subscriber.status = status
    subscriber.updated_at = clock.now()


# --- the policy -------------------------------------------------------------------


def record_bounce(
    session: Session,
    settings: Settings,
    *,
    delivery: Delivery | None = None,
    email: str | None = None,
    provider: str,
    hard: bool,
    detail: str = "",
) -> FeedbackOutcome:
    """Record a bounce for a delivery (preferred) or an address and apply the policy."""
    kind = KIND_HARD if hard else KIND_SOFT
    subscriber, address = _resolve(session, delivery, email)
    outcome = FeedbackOutcome(
        kind=kind,
        subscriber_id=subscriber.id if subscriber else None,
        delivery_id=delivery.id if delivery else None,
        matched=bool(address),
    )
    if not address:
        return outcome
    if _already(session, kind, delivery):
        outcome.duplicate = True
        return outcome
    event = _event(session, kind, subscriber, delivery, provider, detail)
    outcome.event_id = event.id
    if hard:
        suppress(session, address, "hard_bounce", f"{provider}: {detail}")
        _set_status(subscriber, "bounced")
        outcome.suppressed = True
    elif (
        subscriber is not None
        and soft_bounces(session, settings, subscriber.id) >= settings.soft_bounce_limit
    ):
        suppress(
            session,
            address,
            "soft_bounce",
            f"{settings.soft_bounce_limit} soft bounces within {settings.soft_bounce_days} days; last: {detail}",
        )
        _set_status(subscriber, "bounced")
        outcome.suppressed = True
    return outcome


def soft_bounces(session: Session, settings: Settings, subscriber_id: int) -> int:
    """Soft bounces of one subscriber within the policy window."""
    since = clock.now() - timedelta(days=settings.soft_bounce_days)
    return session.exec(
        select(func.count(Event.id)).where(
            Event.kind == KIND_SOFT, Event.subscriber_id == subscriber_id, Event.created_at >= since
        )
    ).one()


def record_complaint(
    session: Session,
    *,
    delivery: Delivery | None = None,
    email: str | None = None,
    provider: str,
    detail: str = "",
) -> FeedbackOutcome:
    """A reader marked the issue as spam: stop mailing them, for good."""
    subscriber, address = _resolve(session, delivery, email)
    outcome = FeedbackOutcome(
        kind=KIND_COMPLAINT,
        subscriber_id=subscriber.id if subscriber else None,
        delivery_id=delivery.id if delivery else None,
        matched=bool(address),
    )
    if not address:
        return outcome
    if _already(session, KIND_COMPLAINT, delivery):
        outcome.duplicate = True
        return outcome
    event = _event(session, KIND_COMPLAINT, subscriber, delivery, provider, detail)
    outcome.event_id = event.id
    suppress(session, address, "complaint", f"{provider}: {detail}")
    _set_status(subscriber, "complained")
    outcome.suppressed = True
    return outcome
