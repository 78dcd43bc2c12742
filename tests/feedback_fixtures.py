"""Rows the feedback tests need: a subscriber, an issue, a sent delivery;
and a subscriber's status read back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from newsletter import clock, db
from newsletter.models import Delivery, Issue, Subscriber
from newsletter.suppression import email_hash


def make_subscriber(email: str, status: str = "active", **fields) -> int:
    with db.session_scope() as s:
        row = Subscriber(email=email, email_hash=email_hash(email), status=status, **fields)
        s.add(row)
        s.flush()
        return row.id


def make_issue(number: int = 1, status: str = "sent") -> int:
    now = clock.now()
    with db.session_scope() as s:
        row = Issue(
            number=number,
            title=f"Issue {number:03d}",
            subject=f"Issue {number:03d}",
            status=status,
            window_start=now - timedelta(days=7),
            window_end=now,
        )
        s.add(row)
        s.flush()
        return row.id


def make_delivery(
    issue_id: int, subscriber_id: int, *, provider_message_id: str | None = None, status: str = "sent"
) -> int:
    with db.session_scope() as s:
        sub = s.get(Subscriber, subscriber_id)
        row = Delivery(
            issue_id=issue_id,
            subscriber_id=subscriber_id,
            email=sub.email,
            status=status,
            provider_message_id=provider_message_id,
            sent_at=clock.now() if status == "sent" else None,
        )
        s.add(row)
        s.flush()
        return row.id


def status_of(email: str) -> str:
    with db.session_scope() as s:
        return s.exec(select(Subscriber.status).where(Subscriber.email == email)).one()


@pytest.fixture
def engine(database_url):
    """The process engine on this test's database; a feedback test module asks
    for it for all its tests with ``pytestmark = pytest.mark.usefixtures("engine")``."""
    db.init_engine(database_url)
    yield
