"""Per-issue outcomes: counted from deliveries, events and aggregate clicks."""

from __future__ import annotations

import pytest

from newsletter import db
from newsletter.feedback import service
from newsletter.feedback.clicks import count_click
from newsletter.feedback.stats import issue_outcomes
from newsletter.models import Delivery, Event
from tests.feedback_fixtures import make_delivery, make_issue, make_subscriber

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database


def test_issue_outcomes(settings):
    issue = make_issue(3)
    other_issue = make_issue(4)
    d = {}
    for n, status in enumerate(["sent"] * 6 + ["failed", "pending", "skipped"]):
        sid = make_subscriber(f"r{n}@example.org")
        d[n] = make_delivery(issue, sid, status=status)
        make_delivery(other_issue, sid)  # another issue's rows never leak in
    with db.session_scope() as s:
        get = lambda n: s.get(Delivery, d[n])  # noqa: E731
        service.record_bounce(s, settings, delivery=get(0), provider="ses", hard=True, detail="5.1.1")
        service.record_bounce(s, settings, delivery=get(1), provider="ses", hard=False, detail="4.2.2")
        service.record_bounce(
            s, settings, delivery=get(1), provider="dsn", hard=False, detail="4.2.2"
        )  # same one
        service.record_complaint(s, delivery=get(2), provider="ses", detail="abuse")
        # the delivery engine's permanent SMTP refusal: failed, and a hard bounce
        service.record_bounce(s, settings, delivery=get(6), provider="smtp", hard=True, detail="550 5.1.1")
        s.add(Event(kind="unsubscribe", issue_id=issue, subscriber_id=get(3).subscriber_id))
        for _ in range(4):
            count_click(s, issue, "https://example.com/a")
        count_click(s, issue, "https://example.com/b")
        count_click(s, other_issue, "https://example.com/a")
    with db.session_scope() as s:
        out = issue_outcomes(s, issue)
    assert out["total"] == 9
    assert out["sent"] == 6
    assert out["delivered"] == 4  # 6 sent, 2 bounced afterwards
    assert out["failed"] == 1
    assert out["pending"] == 1
    assert out["skipped"] == 1
    assert out["bounced"] == 3 and out["hard_bounced"] == 2 and out["soft_bounced"] == 1
    assert out["complained"] == 1
    assert out["unsubscribed"] == 1
    assert out["clicks"] == 5
    assert out["complaint_rate"] == 0.25
    with db.session_scope() as s:
        empty = issue_outcomes(s, make_issue(5))
    assert empty["total"] == 0 and empty["delivered"] == 0 and empty["complaint_rate"] == 0.0


def test_unsubscribes_are_attributed_to_the_issue_that_preceded_them(settings):
    from datetime import UTC, datetime, timedelta

    from newsletter import clock
    from newsletter.models import Issue

    clock.set(datetime(2026, 3, 2, 8, tzinfo=UTC))
    week1, week2 = make_issue(10), make_issue(11)
    a, b, c = (make_subscriber(f"{n}@example.org") for n in "abc")
    for sid in (a, b):
        make_delivery(week1, sid)
    with db.session_scope() as s:
        s.get(Issue, week1).send_started_at = clock.now()
    clock.advance(timedelta(days=1))
    with db.session_scope() as s:
        s.add(
            Event(kind="unsubscribe", subscriber_id=a, created_at=clock.now())
        )  # after week 1: counts for it
        s.add(Event(kind="unsubscribe", subscriber_id=c, created_at=clock.now()))  # never got week 1
    clock.advance(timedelta(days=6))
    with db.session_scope() as s:
        s.get(Issue, week2).send_started_at = clock.now()
    make_delivery(week2, b)
    clock.advance(timedelta(hours=2))
    with db.session_scope() as s:
        s.add(Event(kind="unsubscribe", subscriber_id=b, created_at=clock.now()))  # after week 2: week 2's
    with db.session_scope() as s:
        assert issue_outcomes(s, week1)["unsubscribed"] == 1
        assert issue_outcomes(s, week2)["unsubscribed"] == 1
