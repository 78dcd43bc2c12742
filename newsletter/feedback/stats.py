"""Honest per-issue outcomes: what happened, counted, not who read what.

``issue_outcomes`` reads delivery rows, feedback events and aggregate click
counts; it never looks at individuals' behaviour (there is no open pixel,
and clicks are counted per link, not per person). The editor's dashboard
draws its charts from it.
"""

from __future__ import annotations

from sqlalchemy import distinct, func
from sqlmodel import Session, select

from newsletter.feedback.service import KIND_COMPLAINT, KIND_HARD, KIND_SOFT
from newsletter.models import ClickCount, Delivery, Event

BOUNCES = (KIND_HARD, KIND_SOFT)


def issue_outcomes(session: Session, issue_id: int) -> dict:
    """delivered, failed, bounced, complained, unsubscribed, clicks (+ detail).

    * ``sent``: accepted by the mail server or provider;
    * ``bounced``: deliveries with a bounce (hard or soft), whichever way it came;
    * ``delivered``: sent and not bounced afterwards;
    * ``failed``: could not be sent (including immediate permanent refusals);
    * ``complained`` / ``unsubscribed``: events attributed to this issue;
    * ``clicks``: the sum of the aggregate per-link counters.
    """
    by_status = dict(
        session.exec(
            select(Delivery.status, func.count(Delivery.id)).where(Delivery.issue_id == issue_id).group_by(
                Delivery.status
            )
        ).all()
    )
    bounced_ids = select(Event.delivery_id).where(
        Event.issue_id == issue_id, Event.kind.in_(BOUNCES), Event.delivery_id.is_not(None)
    )
    bounced_after_send = session.exec(
        select(func.count(Delivery.id)).where(
            Delivery.issue_id == issue_id, Delivery.status == "sent", Delivery.id.in_(bounced_ids)
        )
    ).one()
    events = dict(
        session.exec(
            select(Event.kind, func.count(distinct(Event.subscriber_id))).where(Event.issue_id == issue_id).group_by(
                Event.kind
            )
        ).all()
    )
    hard = session.exec(
        select(func.count(distinct(Event.delivery_id))).where(Event.issue_id == issue_id, Event.kind == KIND_HARD)
    ).one()
    bounced = session.exec(
        select(func.count(distinct(Event.delivery_id))).where(Event.issue_id == issue_id, Event.kind.in_(BOUNCES))
    ).one()
    clicks = session.exec(select(func.coalesce(func.sum(ClickCount.count), 0)).where(ClickCount.issue_id == issue_id))
    sent = by_status.get("sent", 0)
    delivered = sent - bounced_after_send
    complained = events.get(KIND_COMPLAINT, 0)
    return {
        "total": sum(by_status.values()),
        "pending": by_status.get("pending", 0) + by_status.get("sending", 0),
        "sent": sent,
        "delivered": delivered,
        "failed": by_status.get("failed", 0),
        "skipped": by_status.get("skipped", 0),
        "bounced": bounced,
        "hard_bounced": hard,
        "soft_bounced": bounced - hard,
        "complained": complained,
        "unsubscribed": events.get("unsubscribe", 0),
        "clicks": int(clicks.one() or 0),
        "complaint_rate": round(complained / delivered, 5) if delivered else 0.0,
        "bounce_rate": round(bounced / sent, 5) if sent else 0.0,
    }


def issue_links(session: Session, issue_id: int, limit: int = 20) -> list[tuple[str, int]]:
    """The most clicked links of an issue (aggregate counts only)."""
    rows = session.exec(
        select(ClickCount.url, ClickCount.count)
        .where(ClickCount.issue_id == issue_id)
        .order_by(ClickCount.count.desc(), ClickCount.url)
        .limit(limit)
    ).all()
    return [(url, count) for url, count in rows]
