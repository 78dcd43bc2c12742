"""What the dashboard shows, as plain data (the view only renders it).

Everything is an aggregate query or a short, limited list, so the page stays
fast with a million subscribers: counts by status are one GROUP BY, the
growth series is one pass with conditional sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import case, literal
from sqlmodel import Session, func, select

from newsletter import clock
from newsletter.addresses import hide_addresses
from newsletter.delivery import localtime, send
from newsletter.feedback.stats import issue_outcomes as stats
from newsletter.issues import states
from newsletter.models import Event, Issue, Subscriber
from newsletter.queries import subscriber_counts
from newsletter.readers.service import ZoneSummary, zone_summary
from newsletter.scheduling import slots

OPEN_STATUSES = sorted(states.OPEN)
FEEDBACK_KINDS = ("bounce_hard", "bounce_soft", "bounce", "complaint")


@dataclass
class NextSlot:
    at: datetime  # aware, in the newsletter's time zone
    assemble_at: datetime
    issue: Issue | None
    window: Window | None = None  # local-time delivery: when the first and the last reader get it


@dataclass
class Window:
    """Local-time delivery: the slot's wall-clock time reaches the first
    reader's zone at ``first`` (the approval deadline) and the last at ``last``."""

    first: datetime
    last: datetime


@dataclass
class Waves:
    """An issue in flight and its waves still to come: (moment, zone, readers)."""

    issue: Issue
    waves: list[tuple[datetime, str, int]]

    @property
    def readers(self) -> int:
        return sum(count for _, _, count in self.waves)


@dataclass
class Dashboard:
    next_slot: NextSlot | None
    open_issue: Issue | None
    recent_issues: list[tuple[Issue, dict]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    growth: list[tuple[str, int]] = field(default_factory=list)
    feedback: list[FeedbackLine] = field(default_factory=list)
    schedule_text: str = ""  # "Mondays at 08:00 (UTC)"
    last_sent: Issue | None = None
    waves: list[Waves] = field(default_factory=list)
    zones: ZoneSummary | None = None  # local-time delivery only

    @property
    def next_issue(self) -> Issue | None:
        """The issue the "Next issue" card names: the slot's own while it is still
        open, else the open one — never an issue that already went out."""
        slot_issue = self.next_slot.issue if self.next_slot else None
        if slot_issue is not None and slot_issue.status in states.OPEN:
            return slot_issue
        return self.open_issue


def slot_window(settings, slot_at: datetime | None, session: Session | None = None) -> Window | None:
    """When the first and the last reader get the issue of ``slot_at`` (None
    unless local-time delivery is on)."""
    if slot_at is None or not settings.local_time_delivery:
        return None
    return Window(*localtime.window(settings, slot_at, session))


def waves_to_come(session: Session) -> list[Waves]:
    """The waves still to come of every issue in flight (few issues; each
    query reads only its pending future rows from ``ix_delivery_claim``)."""
    in_flight = session.exec(select(Issue).where(Issue.status.in_(sorted(states.IN_FLIGHT)))).all()
    found = [Waves(issue, send.waves_to_come(issue.id)) for issue in in_flight]
    return [w for w in found if w.waves]


def next_slot_time(settings, now: datetime | None = None) -> datetime | None:
    """The next weekly slot from NEWSLETTER_SCHEDULE in NEWSLETTER_TIMEZONE."""
    now = (now or clock.now()).astimezone(settings.tz)
    trigger = CronTrigger.from_crontab(settings.schedule, timezone=settings.tz)
    return trigger.get_next_fire_time(None, now)


def growth_series(session: Session, weeks: int = 12, now: datetime | None = None) -> list[tuple[str, int]]:
    """Readers signed up minus readers gone, at the end of each of the last
    ``weeks`` weeks: one scan of the table with a conditional sum per week."""
    now = now or clock.now()
    ends = [now - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    joined = [func.sum(case((Subscriber.created_at <= end, 1), else_=0)) for end in ends]
    left = [
        func.sum(
            case(
                ((Subscriber.unsubscribed_at.is_not(None)) & (Subscriber.unsubscribed_at <= end), 1), else_=0
            )
        )
        for end in ends
    ]
    row = session.exec(select(literal(1), *joined, *left)).one()
    values = list(row)[1:]
    joined_v, left_v = values[:weeks], values[weeks:]
    return [
        (end.strftime("%d %b"), int(j or 0) - int(u or 0))
        for end, j, u in zip(ends, joined_v, left_v, strict=True)
    ]


@dataclass
class FeedbackLine:
    """One recent bounce or complaint as the dashboard shows it."""

    kind: str
    created_at: datetime
    detail: str
    subscriber_id: int | None
    address: str | None  # None for the editor role (and for erased readers)
    erased: bool


def recent_feedback(session: Session, limit: int = 10, *, show_addresses: bool = False) -> list[FeedbackLine]:
    """The latest bounces and complaints. Without ``show_addresses`` (the
    ``editor`` role) no reader's address appears: not as the reader, and not
    inside the provider's detail text either."""
    rows = session.exec(
        select(Event, Subscriber.email)
        .join(Subscriber, Subscriber.id == Event.subscriber_id, isouter=True)
        .where(Event.kind.in_(FEEDBACK_KINDS))
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(limit)
    ).all()
    return [
        FeedbackLine(
            kind=event.kind,
            created_at=event.created_at,
            detail=event.detail if show_addresses else hide_addresses(event.detail),
            subscriber_id=event.subscriber_id if show_addresses else None,
            address=email if show_addresses else None,
            erased=email is None,
        )
        for event, email in rows
    ]


def issue_outcomes(session: Session, issue: Issue) -> dict:
    """Delivery outcomes of one issue (``feedback.stats``)."""
    return dict(stats(session, issue.id))


def build_dashboard(session: Session, settings, *, show_addresses: bool = False) -> Dashboard:
    slot_at = next_slot_time(settings)
    slot = None
    if slot_at is not None:
        issue = session.exec(select(Issue).where(Issue.slot_at == slot_at)).first()
        window = slot_window(settings, slot_at, session)
        first = window.first if window else slot_at
        slot = NextSlot(
            at=slot_at, assemble_at=first - timedelta(hours=settings.review_hours), issue=issue, window=window
        )
    open_issue = session.exec(
        select(Issue).where(Issue.status.in_(OPEN_STATUSES)).order_by(Issue.number.desc())
    ).first()
    recent = session.exec(
        select(Issue)
        .where(Issue.status.in_(sorted(states.PUBLIC | {states.CANCELLED})))
        .order_by(Issue.number.desc())
        .limit(5)
    ).all()
    return Dashboard(
        next_slot=slot,
        open_issue=open_issue,
        recent_issues=[(issue, issue_outcomes(session, issue)) for issue in recent],
        counts=subscriber_counts(session),
        growth=growth_series(session),
        feedback=recent_feedback(session, show_addresses=show_addresses),
        schedule_text=slots.in_words(settings.schedule, settings.timezone),
        last_sent=next((issue for issue in recent if issue.status == states.SENT), None),
        waves=waves_to_come(session),
        zones=zone_summary(session) if settings.local_time_delivery else None,
    )
