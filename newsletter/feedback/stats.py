"""Honest per-issue outcomes: what happened, counted, not who read what.

``issue_outcomes`` reads delivery rows, feedback events and aggregate click
counts; it never looks at individuals' behaviour (there is no open pixel,
and clicks are counted per link, not per person). The editor's dashboard
draws its charts from it.
"""

from __future__ import annotations

from sqlalchemy import and_, distinct, exists, func, or_
from sqlmodel import Session, select

from newsletter.feedback.service import KIND_COMPLAINT, KIND_HARD, KIND_SOFT
from newsletter.models import ClickCount, Delivery, Event, Issue

BOUNCES = (KIND_HARD, KIND_SOFT)


def issue_outcomes(session: Session, issue_id: int) -> dict:
    """delivered, failed, bounced, complained, unsubscribed, clicks (+ detail).

    * ``sent``: accepted by the mail server or provider;
    * ``bounced``: deliveries with a bounce (hard or soft), whichever way it came;
    * ``delivered``: sent and not bounced afterwards;
    * ``failed``: could not be sent (including immediate permanent refusals);
    * ``complained``: complaints about this issue's deliveries;
    * ``unsubscribed``: unsubscribes tagged with this issue, or made by a
      reader after this issue reached them and before the next one did;
    * ``clicks``: the sum of the aggregate per-link counters.
    """
    by_status = dict(
        session.exec(
            select(Delivery.status, func.count(Delivery.id))
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status)
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
            select(Event.kind, func.count(distinct(Event.subscriber_id)))
            .where(Event.issue_id == issue_id)
            .group_by(Event.kind)
        ).all()
    )
    hard = session.exec(
        select(func.count(distinct(Event.delivery_id))).where(
            Event.issue_id == issue_id, Event.kind == KIND_HARD
        )
    ).one()
    bounced = session.exec(
        select(func.count(distinct(Event.delivery_id))).where(
            Event.issue_id == issue_id, Event.kind.in_(BOUNCES)
        )
    ).one()
    unsubscribed = _unsubscribed(session, issue_id)
    clicks = session.exec(
        select(func.coalesce(func.sum(ClickCount.count), 0)).where(ClickCount.issue_id == issue_id)
    )
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
        "unsubscribed": unsubscribed,
        "clicks": int(clicks.one() or 0),
        "complaint_rate": round(complained / delivered, 5) if delivered else 0.0,
        "bounce_rate": round(bounced / sent, 5) if sent else 0.0,
    }


def _unsubscribed(session: Session, issue_id: int) -> int:
    """Readers who unsubscribed because of this issue: events tagged with it,
    or (unsubscribe links are per reader, not per issue) untagged ones from
    readers who had been sent this issue and had not yet been sent the next."""
    started = session.exec(select(Issue.send_started_at).where(Issue.id == issue_id)).first()
    next_start = (
        session.exec(select(func.min(Issue.send_started_at)).where(Issue.send_started_at > started)).one()
        if started is not None
        else None
    )
    got_it = exists().where(
        Delivery.issue_id == issue_id,
        Delivery.subscriber_id == Event.subscriber_id,
        Delivery.status == "sent",
        Delivery.sent_at <= Event.created_at,
    )
    untagged = and_(Event.issue_id.is_(None), got_it)
    if next_start is not None:
        untagged = and_(untagged, Event.created_at < next_start)
    return session.exec(
        select(func.count(distinct(Event.subscriber_id))).where(
            Event.kind == "unsubscribe", or_(Event.issue_id == issue_id, untagged)
        )
    ).one()


def issue_links(session: Session, issue_id: int, limit: int = 20) -> list[tuple[str, int]]:
    """The most clicked links of an issue (aggregate counts only)."""
    rows = session.exec(
        select(ClickCount.url, ClickCount.count)
        .where(ClickCount.issue_id == issue_id)
        .order_by(ClickCount.count.desc(), ClickCount.url)
        .limit(limit)
    ).all()
    return [(url, count) for url, count in rows]
