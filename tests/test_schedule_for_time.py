"""Scheduling an issue for a time of the editor's choosing, end to end:
the issues service transition, the scheduler tick that sends it (once, to a
real SMTP server), its interplay with the weekly slot, and the editor's
form. Real database (SQLite or PostgreSQL), real aiosmtpd, a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.delivery.mailqueue import send_due
from newsletter.issues import service
from newsletter.issues.service import IssueError
from newsletter.models import Delivery, Issue
from newsletter.scheduling import jobs, runs
from tests.editor_fixtures import add_subscriber, seed_issue
from tests.helpers import run_concurrently

LONDON = ZoneInfo("Europe/London")
# Wednesday 25 March 2026 (London on GMT): the Monday slot is long past its
# grace period and the next review (Sunday) is days away, so the weekly cycle
# stays out of the way unless a test brings it in.
WEDNESDAY = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)
SLOT = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # Mon 30 March 08:00 BST
READERS = ("ann@example.org", "bo@example.org", "cy@example.org")


@pytest.fixture
def app(make_app, smtp_server):
    clock.set(WEDNESDAY)
    return make_app(transport=smtp_server.dsn, timezone="Europe/London", send_concurrency=1)


@pytest.fixture
def settings(app):
    return app.extensions["signal_settings"]


@pytest.fixture
def issue(settings) -> int:
    """A draft with articles and three active readers."""
    number = seed_issue(settings)
    for address in READERS:
        add_subscriber(address)
    return number


def row(number: int) -> Issue:
    with session_scope() as session:
        return session.exec(select(Issue).where(Issue.number == number)).scalar_one()


def reader_mail(smtp_server) -> list:
    return [m for m in smtp_server.messages if m.to in READERS]


def tick_at(settings, moment: datetime) -> list[str]:
    """One scheduler tick at ``moment``, then the transactional mail it queued
    is sent (the scheduler process's mail sender, run here in the foreground)."""
    clock.set(moment)
    actions = jobs.tick(settings)
    send_due(settings)
    return actions


# --- the service ---------------------------------------------------------------------------


def test_scheduling_a_draft_approves_it_and_stores_the_time_in_utc(settings, issue):
    when = datetime(2026, 3, 26, 10, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 09:30 UTC
    scheduled = service.schedule_issue(issue, when, by="ed@example.org")
    assert scheduled.status == "scheduled"
    stored = row(issue)
    assert stored.status == "scheduled"
    assert stored.scheduled_for == datetime(2026, 3, 26, 9, 30, tzinfo=UTC)
    assert stored.approved_by == "ed@example.org" and stored.approved_at == WEDNESDAY


def test_scheduling_again_moves_the_time_and_keeps_the_first_approval(settings, issue):
    service.approve_issue(issue, "first@example.org")
    service.schedule_issue(issue, WEDNESDAY + timedelta(days=1), by="second@example.org")
    clock.advance(timedelta(hours=1))
    service.schedule_issue(issue, WEDNESDAY + timedelta(days=2), by="third@example.org")
    stored = row(issue)
    assert stored.scheduled_for == WEDNESDAY + timedelta(days=2)
    assert (stored.approved_by, stored.approved_at) == ("first@example.org", WEDNESDAY)


@pytest.mark.parametrize(
    "when, message",
    [
        (WEDNESDAY, "not in the future"),
        (WEDNESDAY - timedelta(minutes=1), "not in the future"),
        (datetime(2020, 1, 1, tzinfo=UTC), "not in the future"),
        (datetime(2026, 3, 26, 10, 0), "needs a time zone"),  # naive
        ("2026-03-26T10:00", "needs a time zone"),
    ],
)
def test_past_now_and_naive_times_are_refused_and_nothing_changes(settings, issue, when, message):
    with pytest.raises(IssueError, match=message):
        service.schedule_issue(issue, when)
    stored = row(issue)
    assert (stored.status, stored.scheduled_for, stored.approved_at) == ("draft", None, None)


def test_only_an_open_issue_with_articles_can_be_scheduled(settings, issue):
    later = WEDNESDAY + timedelta(days=1)
    with pytest.raises(IssueError, match="there is no issue 999"):
        service.schedule_issue(999, later)
    service.set_issue_articles(issue, [])
    with pytest.raises(IssueError, match="has no articles"):
        service.schedule_issue(issue, later)
    service.cancel_issue(issue)
    with pytest.raises(IssueError, match="is cancelled"):
        service.schedule_issue(issue, later)


def test_editing_a_scheduled_issue_returns_it_to_draft_and_clears_the_time(settings, issue):
    service.schedule_issue(issue, WEDNESDAY + timedelta(days=1), by="ed@example.org")
    service.update_issue(issue, subject="A better subject")
    stored = row(issue)
    assert (stored.status, stored.scheduled_for, stored.approved_at) == ("draft", None, None)

    service.schedule_issue(issue, WEDNESDAY + timedelta(days=1))
    with session_scope() as session:
        items = [(ia.article_id, ia.section) for ia, _ in service.issue_articles(session, row(issue))]
    service.set_issue_articles(issue, items[:1])
    assert (row(issue).status, row(issue).scheduled_for) == ("draft", None)


def test_cancel_clears_the_time(settings, issue):
    service.schedule_issue(issue, WEDNESDAY + timedelta(days=1))
    service.cancel_issue(issue)
    assert (row(issue).status, row(issue).scheduled_for) == ("cancelled", None)


def test_unschedule_keeps_the_approval(settings, issue):
    with pytest.raises(IssueError, match="only a scheduled issue"):
        service.unschedule_issue(issue)
    service.schedule_issue(issue, WEDNESDAY + timedelta(days=1), by="ed@example.org")
    service.unschedule_issue(issue)
    stored = row(issue)
    assert (stored.status, stored.scheduled_for, stored.approved_by) == ("approved", None, "ed@example.org")
    assert service.unschedule_issue(issue).status == "approved"  # idempotent


def test_a_state_change_made_meanwhile_wins_over_a_stale_schedule(settings, issue):
    """The transition is one conditional UPDATE on the status that was read:
    if "send now" (or a tick) started the issue in between, scheduling is
    refused instead of putting a sending issue back to scheduled."""
    from newsletter.delivery.send import start_send

    service.approve_issue(issue, "ed@example.org")
    with session_scope() as session:
        stale = service.get_issue(session, issue)
        session.expunge(stale)
    start_send(settings, issue)
    with session_scope() as session, pytest.raises(IssueError, match="changed meanwhile"):
        service._move(session, stale, {"status": "scheduled", "scheduled_for": WEDNESDAY + timedelta(days=1)})
    assert (row(issue).status, row(issue).scheduled_for) == ("sending", None)


# --- the scheduler ---------------------------------------------------------------------------


def test_the_tick_sends_a_scheduled_issue_at_its_time_exactly_once(settings, issue, smtp_server):
    when = datetime(2026, 3, 26, 10, 0, tzinfo=LONDON)
    service.schedule_issue(issue, when, by="ed@example.org")
    tick_at(settings, when - timedelta(seconds=1))
    assert reader_mail(smtp_server) == [] and row(issue).status == "scheduled"

    actions = tick_at(settings, when)
    assert any(a.startswith("timed Issue 001") and "3 sent" in a for a in actions), actions
    received = smtp_server.wait_for(len(READERS))
    assert sorted(m.to for m in reader_mail(smtp_server)) == sorted(READERS)
    stored = row(issue)
    assert (stored.status, stored.sent_count) == ("sent", len(READERS))
    assert runs.get(jobs.timed_job(issue), when).state == "done"

    for later in (timedelta(seconds=5), timedelta(minutes=10), timedelta(hours=2)):
        assert not any("timed" in a for a in tick_at(settings, when + later))
    assert len(smtp_server.messages) == len(received)


def test_concurrent_ticks_send_a_scheduled_issue_once(settings, issue, smtp_server):
    when = WEDNESDAY + timedelta(hours=3)
    service.schedule_issue(issue, when)
    clock.set(when + timedelta(seconds=2))
    assert run_concurrently(lambda: jobs.tick(settings)) == []
    send_due(settings)
    smtp_server.wait_for(len(READERS))
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == len(READERS)
    assert sorted(m.to for m in reader_mail(smtp_server)) == sorted(READERS)
    assert row(issue).status == "sent"


def test_the_weekly_slot_leaves_a_scheduled_issue_to_its_own_time(settings, smtp_server):
    """The issue assembled for Monday's slot, scheduled by the editor for
    Monday afternoon: the slot does not send it early; its time does."""
    clock.set(SLOT - timedelta(days=2))
    number = seed_issue(settings)  # articles published a day before
    for address in READERS:
        add_subscriber(address)
    tick_at(settings, SLOT - timedelta(hours=24))  # review: assembles (adopts) the draft for the slot
    assert row(number).slot_at == SLOT
    afternoon = SLOT + timedelta(hours=6)
    service.schedule_issue(number, afternoon, by="ed@example.org")

    actions = tick_at(settings, SLOT)
    assert any("left to its scheduled time" in a for a in actions), actions
    run = runs.get(jobs.SEND, SLOT)
    assert run.state == "done" and "scheduled for Mon 30 Mar 2026 14:00 BST" in run.detail
    assert reader_mail(smtp_server) == [] and row(number).status == "scheduled"

    tick_at(settings, afternoon + timedelta(seconds=30))
    smtp_server.wait_for(len(READERS))
    assert sorted(m.to for m in reader_mail(smtp_server)) == sorted(READERS)
    tick_at(settings, afternoon + timedelta(minutes=30))
    assert len(reader_mail(smtp_server)) == len(READERS)


def test_an_issue_scheduled_before_the_slot_is_sent_then_and_not_again_at_the_slot(settings, smtp_server):
    clock.set(SLOT - timedelta(days=2))
    number = seed_issue(settings)
    for address in READERS:
        add_subscriber(address)
    tick_at(settings, SLOT - timedelta(hours=24))
    service.schedule_issue(number, SLOT - timedelta(hours=2))
    tick_at(settings, SLOT - timedelta(hours=2))
    smtp_server.wait_for(len(READERS))
    tick_at(settings, SLOT)
    assert runs.get(jobs.SEND, SLOT).state == "done"
    assert len(reader_mail(smtp_server)) == len(READERS)


def test_a_time_missed_beyond_the_grace_period_is_not_sent_late(settings, accounts, issue, smtp_server):
    when = WEDNESDAY + timedelta(hours=1)
    service.schedule_issue(issue, when, by="ed@example.org")
    late = when + timedelta(hours=settings.misfire_grace_hours, minutes=1)
    actions = tick_at(settings, late)  # the scheduler was down all that time
    assert "timed Issue 001: missed by 6.0 h, returned to approved" in actions
    stored = row(issue)
    assert (stored.status, stored.scheduled_for, stored.approved_by) == ("approved", None, "ed@example.org")
    notices = smtp_server.wait_for(2)  # the admin and the editor account
    assert sorted(n.to for n in notices) == ["admin@example.org", "editor@example.org"]
    assert {n.message["Subject"] for n in notices} == {"Issue 001 was not sent at its time"}
    assert "was not sent late" in notices[0].text and "Thu" not in notices[0].message["Subject"]
    assert tick_at(settings, late + timedelta(minutes=5)) == []
    assert reader_mail(smtp_server) == []


def test_a_failing_timed_send_is_recorded_reported_once_and_retried(
    make_settings, settings, issue, smtp_server, monkeypatch
):

    real = jobs.deliver
    monkeypatch.setattr(jobs, "deliver", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("SMTP down")))
    settings = make_settings(**{**settings.__dict__, "editor_emails": ("chief@example.org",)})
    when = WEDNESDAY + timedelta(hours=1)
    service.schedule_issue(issue, when)
    tick_at(settings, when)
    assert runs.get(jobs.timed_job(issue), when).state == "failed"
    tick_at(settings, when + timedelta(minutes=1))  # before the retry delay: untouched
    [notice] = smtp_server.wait_for(1)
    assert notice.message["Subject"] == "The scheduler could not send Issue 001"
    assert "SMTP down" in notice.text
    monkeypatch.setattr(jobs, "deliver", real)
    tick_at(settings, when + timedelta(minutes=6))
    smtp_server.wait_for(1 + len(READERS))
    assert runs.get(jobs.timed_job(issue), when).state == "done" and row(issue).status == "sent"


def test_the_schedule_command_lists_issues_scheduled_for_a_time(app, settings, issue):
    service.schedule_issue(issue, datetime(2026, 3, 26, 10, 0, tzinfo=LONDON))
    result = app.test_cli_runner().invoke(args=["schedule"])
    assert result.exit_code == 0, result.output
    assert "Issues scheduled for a time" in result.output
    assert "Issue 001  Thu 26 Mar 2026 10:00 GMT (10:00 UTC)" in result.output


# --- the editor ---------------------------------------------------------------------------------


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_the_editor_schedules_and_the_tick_sends_it_once(editor, settings, issue, smtp_server):
    page = text_of(editor.get(f"/editor/issues/{issue}"))
    assert f'action="/editor/issues/{issue}/schedule"' in page  # offered for a draft too
    r = editor.post(
        f"/editor/issues/{issue}/schedule", data={"when": "2026-03-26T10:00"}, follow_redirects=True
    )
    body = text_of(r)
    assert "Issue 001 is scheduled for Thu 26 Mar 2026 10:00 GMT." in body
    stored = row(issue)
    assert stored.status == "scheduled" and stored.approved_by == "editor@example.org"
    assert stored.scheduled_for == datetime(
        2026, 3, 26, 10, 0, tzinfo=UTC
    )  # London = UTC in March before the change
    assert "Scheduled: goes out" in body and f'action="/editor/issues/{issue}/unschedule"' in body
    assert 'value="2026-03-26T10:00"' in body  # the form shows the current time, to move it

    tick_at(settings, datetime(2026, 3, 26, 10, 0, 1, tzinfo=UTC))
    smtp_server.wait_for(len(READERS))
    tick_at(settings, datetime(2026, 3, 26, 10, 5, tzinfo=UTC))
    assert sorted(m.to for m in reader_mail(smtp_server)) == sorted(READERS)
    assert row(issue).status == "sent"
    page = text_of(editor.get(f"/editor/issues/{issue}"))
    assert f'action="/editor/issues/{issue}/schedule"' not in page


def test_the_editor_moves_and_unschedules(editor, settings, issue):
    editor.get(f"/editor/issues/{issue}")
    editor.post(f"/editor/issues/{issue}/schedule", data={"when": "2026-03-26T10:00"})
    r = editor.post(
        f"/editor/issues/{issue}/schedule", data={"when": "2026-04-02T09:15"}, follow_redirects=True
    )
    assert "Move" in text_of(r)
    assert row(issue).scheduled_for == datetime(2026, 4, 2, 8, 15, tzinfo=UTC)  # 09:15 BST
    r = editor.post(f"/editor/issues/{issue}/unschedule", follow_redirects=True)
    assert "is no longer scheduled; it stays approved." in text_of(r)
    assert (row(issue).status, row(issue).scheduled_for) == ("approved", None)


@pytest.mark.parametrize(
    "when, message",
    [
        ("2026-03-25T11:59", "not in the future"),
        ("2020-01-01T00:00", "not in the future"),
        ("", "Choose a date and time"),
        ("next tuesday", "Choose a date and time"),
        ("2026-03-26T10:00\r\nBcc: x@evil.example", "Choose a date and time"),
    ],
)
def test_the_editor_is_told_why_a_time_is_refused(editor, settings, issue, when, message):
    editor.get(f"/editor/issues/{issue}")
    r = editor.post(f"/editor/issues/{issue}/schedule", data={"when": when}, follow_redirects=True)
    assert message in text_of(r)
    assert (row(issue).status, row(issue).scheduled_for) == ("draft", None)


def test_saving_a_scheduled_issue_in_the_editor_returns_it_to_draft(editor, settings, issue):
    editor.get(f"/editor/issues/{issue}")
    editor.post(f"/editor/issues/{issue}/schedule", data={"when": "2026-03-26T10:00"})
    page = text_of(editor.get(f"/editor/issues/{issue}"))
    assert row(issue).status == "scheduled" and "saving a change returns it to draft" in page
    data = {
        "title": row(issue).title,
        "theme": row(issue).theme,
        "subject": "Changed after scheduling",
        "preheader": row(issue).preheader,
        "intro": row(issue).intro,
    }
    r = editor.post(f"/editor/issues/{issue}", data=data)
    assert r.status_code == 302, text_of(r)
    stored = row(issue)
    assert (stored.status, stored.scheduled_for, stored.approved_at) == ("draft", None, None)
    page = text_of(editor.get(f"/editor/issues/{issue}"))
    assert "Scheduled:" not in page and "Approve" in page
    assert not any("timed" in a for a in tick_at(settings, datetime(2026, 3, 26, 10, 5, tzinfo=UTC)))
    assert row(issue).status == "draft"  # nothing went out at the old time


def test_scheduling_needs_the_csrf_token(app, accounts, issue):
    from tests.editor_fixtures import EDITOR, login

    client = app.test_client()
    login(client, *EDITOR)
    r = client.post(f"/editor/issues/{issue}/schedule", data={"when": "2026-03-26T10:00"})
    assert r.status_code == 400
    assert row(issue).status == "draft"
