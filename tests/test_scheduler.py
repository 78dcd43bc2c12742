"""The weekly scheduler with a controlled clock: slots, review time, DST,
misfires inside and outside the grace period, idempotency, the lock and the
`newsletter schedule` command. Real database, real SMTP server (aiosmtpd),
the real assembly and delivery pipeline."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from newsletter import clock, db
from newsletter.db import session_scope
from newsletter.delivery.mailqueue import send_due
from newsletter.models import (
    Delivery,
    Editor,
    Event,
    Issue,
    JobRun,
    LoginThrottle,
    OutboxMessage,
    Subscriber,
    SubscribeRequest,
    TransactionalMail,
    WebhookReplay,
)
from newsletter.scheduling import jobs, runs, slots
from newsletter.scheduling.lock import lock_state, make_lock
from tests.content_fixtures import add_articles, article, make_sections
from tests.delivery_fixtures import add_subscribers
from tests.helpers import run_concurrently

EDITOR = "editor@example.org"
READERS = 5


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Week of Monday 23 March 2026, Europe/London on GMT (UTC+0).
SLOT = utc(2026, 3, 23, 8, 0)
REVIEW = utc(2026, 3, 22, 8, 0)  # 24 h before


@pytest.fixture
def weekly(make_settings, smtp_server):
    """Settings for a weekly Monday 08:00 London slot, mail to the SMTP sink,
    four sections, five readers and a week of articles before SLOT."""

    def build(**overrides):
        values = dict(
            transport=smtp_server.dsn,
            schedule="0 8 * * mon",
            timezone="Europe/London",
            review_hours=24,
            editor_emails=(EDITOR,),
            send_concurrency=1,
        )
        values.update(overrides)
        settings = make_settings(**values)
        db.init_engine(settings.database_url)
        return settings

    settings = build()
    clock.set(REVIEW - timedelta(days=3))
    make_sections()
    add_articles(
        settings, [article(n, "ai-agents", at=REVIEW - timedelta(days=2, hours=n)) for n in range(3)]
    )
    add_subscribers(settings, READERS)
    return build


def issues() -> list[Issue]:
    with session_scope() as session:
        return list(session.scalars(select(Issue).order_by(Issue.number)))


def job_runs(job: str) -> list[JobRun]:
    return sorted(runs.runs(job), key=lambda r: r.slot_at)


def readers_mail(smtp_server) -> list:
    return [m for m in smtp_server.messages if m.to != EDITOR]


def editor_mail(smtp_server) -> list:
    return smtp_server.to(EDITOR)


def tick_at(settings, moment: datetime) -> list[str]:
    """One scheduler tick at ``moment``, then the transactional mail it queued
    is sent (the scheduler process's mail sender, run here in the foreground)."""
    clock.set(moment)
    actions = jobs.tick(settings)
    send_due(settings)
    return actions


# --- slots -----------------------------------------------------------------------------


def test_next_and_previous_slot_and_review_time(make_settings):
    settings = make_settings(schedule="0 8 * * mon", timezone="Europe/London", review_hours=24)
    assert slots.next_slot(settings, utc(2026, 3, 20, 12)) == SLOT
    assert slots.next_slot(settings, SLOT) == utc(2026, 3, 30, 7, 0)  # strictly after
    assert slots.next_slot(settings, SLOT, inclusive=True) == SLOT
    assert slots.previous_slot(settings, SLOT) == SLOT
    assert slots.previous_slot(settings, SLOT - timedelta(seconds=1)) == utc(2026, 3, 16, 8, 0)
    assert slots.review_at(settings, SLOT) == REVIEW
    assert slots.describe(settings, utc(2026, 3, 30, 7, 0)) == "Mon 30 Mar 2026 08:00 BST (07:00 UTC)"


def test_slots_follow_london_wall_time_across_both_dst_changes(make_settings):
    settings = make_settings(schedule="0 8 * * mon", timezone="Europe/London")
    # End of March: clocks go forward on Sunday 29 March; 08:00 becomes 07:00 UTC.
    assert slots.upcoming(settings, utc(2026, 3, 20), 2) == [utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)]
    # End of October: clocks go back on Sunday 25 October; 08:00 is 08:00 UTC again.
    assert slots.upcoming(settings, utc(2026, 10, 15), 2) == [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8)]
    assert slots.previous_slot(settings, utc(2026, 10, 26, 7, 59)) == utc(2026, 10, 19, 7)


def test_a_slot_in_the_repeated_autumn_hour_fires_once_and_one_in_the_spring_gap_fires(make_settings):
    settings = make_settings(schedule="30 1 * * sun", timezone="Europe/London")
    # 01:30 happens twice on 25 October 2026 (BST, then GMT): one slot, the first.
    autumn = slots.upcoming(settings, utc(2026, 10, 17), 3)
    assert autumn == [utc(2026, 10, 18, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 11, 1, 1, 30)]
    assert slots.recent_slots(settings, utc(2026, 10, 25, 3), after=utc(2026, 10, 19), limit=5) == [
        utc(2026, 10, 25, 0, 30)
    ]
    # 01:30 does not exist on 29 March 2026: the slot is the same instant, 02:30 BST.
    spring = slots.upcoming(settings, utc(2026, 3, 21), 3)
    assert spring == [utc(2026, 3, 22, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 4, 5, 0, 30)]


def test_recent_slots_walks_back_a_long_gap_cheaply(make_settings):
    settings = make_settings(schedule="* * * * *")
    found = slots.recent_slots(settings, utc(2026, 1, 8, 0, 0, 30), after=utc(2026, 1, 1), limit=3)
    assert found == [utc(2026, 1, 8, 0, 0), utc(2026, 1, 7, 23, 59), utc(2026, 1, 7, 23, 58)]


# --- the weekly cycle --------------------------------------------------------------------


def test_review_time_assembles_the_draft_and_mails_the_editors_once(weekly, smtp_server):
    settings = weekly()
    tick_at(settings, REVIEW - timedelta(minutes=1))  # first start: last week's slot is only recorded
    assert issues() == [] and smtp_server.messages == []

    tick_at(settings, REVIEW)
    [issue] = issues()
    assert (issue.number, issue.status, issue.slot_at) == (1, "draft", SLOT)
    [mail] = smtp_server.wait_for(1)
    assert mail.to == EDITOR
    assert mail.message["Subject"].startswith("Review Issue 001 before Mon 23 Mar 2026 08:00 GMT")
    assert f"{settings.base_url}/editor/issues/1" in mail.text
    assert "3 articles" in mail.text
    assert f'href="{settings.base_url}/editor/issues/1"' in mail.html

    for minutes in (1, 30, 600):  # the job fires again and again: nothing new
        tick_at(settings, REVIEW + timedelta(minutes=minutes))
    assert len(issues()) == 1 and len(smtp_server.messages) == 1
    assert [(r.state, r.slot_at) for r in job_runs("review")] == [("done", SLOT)]


def test_at_the_slot_an_unapproved_issue_waits_then_goes_out_once_approved(weekly, smtp_server):
    from newsletter.issues.service import approve_issue

    settings = weekly()
    tick_at(settings, REVIEW)
    smtp_server.wait_for(1)
    tick_at(settings, SLOT - timedelta(seconds=1))
    assert runs.get(jobs.SEND, SLOT) is None

    tick_at(settings, SLOT)
    assert readers_mail(smtp_server) == []
    [waiting] = [m for m in editor_mail(smtp_server) if "waiting" in m.message["Subject"]]
    assert "Issue 001 is waiting for approval" == waiting.message["Subject"]
    assert f"{settings.base_url}/editor/issues/1" in waiting.text
    assert runs.get(jobs.SEND, SLOT).state == "waiting"
    tick_at(settings, SLOT + timedelta(minutes=5))  # still waiting: told once
    assert len(editor_mail(smtp_server)) == 2

    approve_issue(1, by=EDITOR)
    tick_at(settings, SLOT + timedelta(minutes=20))
    received = smtp_server.wait_for(2 + READERS)
    assert sorted(m.to for m in readers_mail(smtp_server)) == [
        f"reader{n}@example.org" for n in range(READERS)
    ]
    assert issues()[0].status == "sent"
    assert runs.get(jobs.SEND, SLOT).state == "done"
    tick_at(settings, SLOT + timedelta(minutes=40))
    assert len(smtp_server.messages) == len(received)


def test_auto_send_sends_at_the_slot_to_every_reader_exactly_once(weekly, smtp_server):
    settings = weekly(auto_send=True)
    tick_at(settings, REVIEW)
    for moment in (SLOT, SLOT + timedelta(seconds=15), SLOT + timedelta(hours=1)):
        tick_at(settings, moment)
    smtp_server.wait_for(1 + READERS)
    reader_mail = readers_mail(smtp_server)
    assert len(reader_mail) == READERS and len({m.to for m in reader_mail}) == READERS
    assert reader_mail[0].message["Subject"].startswith("Issue 001")
    [issue] = issues()
    assert (issue.status, issue.approved_by, issue.sent_count) == ("sent", "auto-send", READERS)


def test_auto_send_never_approves_content_that_reads_as_a_marker(weekly, smtp_server):
    """Issue 12: the lint blocks auto-send too; the editors are told why."""
    settings = weekly(auto_send=True)
    add_articles(settings, [article(9, "ai-agents", at=REVIEW - timedelta(days=1), image_alt="x",
                                    image_url="https://cdn.example/&#37;&#37;GTS_PREFERENCES_URL&#37;&#37;.png")])  # fmt: skip
    tick_at(settings, REVIEW)
    for moment in (SLOT, SLOT + timedelta(minutes=1)):
        tick_at(settings, moment)
    [issue] = issues()
    assert issue.status == "draft" and readers_mail(smtp_server) == []
    told = [m for m in editor_mail(smtp_server) if "could not send" in m.message["Subject"]]
    assert len(told) == 1 and "cannot be approved" in told[0].text and "image_url" in told[0].text


def test_review_hours_zero_assembles_and_sends_at_the_slot(weekly, smtp_server):
    settings = weekly(auto_send=True, review_hours=0)
    tick_at(settings, REVIEW)
    assert issues() == []
    tick_at(settings, SLOT)
    smtp_server.wait_for(READERS)
    assert [i.status for i in issues()] == ["sent"]
    assert editor_mail(smtp_server) == []


def test_the_slot_follows_summer_time(weekly, smtp_server):
    """After the clocks go forward the Monday 08:00 London slot is 07:00 UTC."""
    settings = weekly(auto_send=True, review_hours=0)
    summer_slot = utc(2026, 3, 30, 7, 0)
    add_articles(
        settings, [article(10 + n, "data", at=summer_slot - timedelta(days=1, hours=n)) for n in range(2)]
    )
    tick_at(
        settings, SLOT + timedelta(hours=7)
    )  # last week's slot, far past: recorded as skipped, nothing sent
    assert [(r.slot_at, r.state) for r in job_runs("send")] == [(SLOT, "skipped")]
    tick_at(settings, summer_slot - timedelta(seconds=1))  # 07:59:59 BST
    assert issues() == []
    tick_at(settings, summer_slot)  # 08:00 BST
    smtp_server.wait_for(READERS)
    [issue] = issues()
    assert issue.slot_at == summer_slot and issue.status == "sent"


def test_the_slot_follows_winter_time(weekly, smtp_server):
    settings = weekly(auto_send=True, review_hours=0)
    winter_slot = utc(2026, 10, 26, 8, 0)  # Monday after the clocks go back: 08:00 GMT
    clock.set(winter_slot - timedelta(days=2))
    add_articles(
        settings, [article(20 + n, "data", at=winter_slot - timedelta(days=1, hours=n)) for n in range(2)]
    )
    runs.claim(jobs.SEND, utc(2026, 10, 19, 7, 0), state="done", detail="last week, sent")
    tick_at(settings, winter_slot - timedelta(hours=1))  # 07:00 UTC: would be 08:00 in summer time
    assert issues() == []
    tick_at(settings, winter_slot)
    smtp_server.wait_for(READERS)
    assert [i.slot_at for i in issues()] == [winter_slot]


def test_a_slot_missed_by_less_than_the_grace_period_runs_once(weekly, smtp_server):
    settings = weekly(auto_send=True)
    runs.claim(jobs.SEND, SLOT - timedelta(days=7), state="done", detail="last week")
    # The scheduler was down from before the review time until 3 h after the slot.
    late = SLOT + timedelta(hours=3)
    actions = tick_at(settings, late)
    assert any("Issue 001" in a for a in actions)
    smtp_server.wait_for(READERS)
    for extra in (1, 60, 300):
        tick_at(settings, late + timedelta(seconds=extra))
    assert len(readers_mail(smtp_server)) == READERS
    assert [(r.slot_at, r.state) for r in job_runs("send")] == [
        (SLOT - timedelta(days=7), "done"),
        (SLOT, "done"),
    ]
    assert len(issues()) == 1


def test_a_slot_missed_by_more_than_the_grace_period_is_skipped_logged_and_reported(
    weekly, smtp_server, caplog
):
    settings = weekly(auto_send=True, misfire_grace_hours=6)
    runs.claim(jobs.SEND, SLOT - timedelta(days=7), state="done", detail="last week")
    caplog.set_level("WARNING", logger="newsletter.scheduler")
    tick_at(settings, SLOT + timedelta(hours=6, minutes=1))
    assert issues() == [] and readers_mail(smtp_server) == []
    [run] = [r for r in job_runs("send") if r.slot_at == SLOT]
    assert run.state == "skipped" and "more than the 6 h grace period" in run.detail
    assert "skipped missed slot" in caplog.text
    [notice] = smtp_server.wait_for(1)
    assert notice.to == EDITOR and notice.message["Subject"] == "Missed slot: nothing was sent late"
    assert "Mon 23 Mar 2026 08:00 GMT" in notice.text and "missed by 6.0 h" in notice.text
    tick_at(settings, SLOT + timedelta(hours=7))
    assert len(smtp_server.messages) == 1  # reported once


def test_after_weeks_of_downtime_only_the_latest_slot_runs(weekly, smtp_server):
    settings = weekly(auto_send=True, review_hours=0)
    runs.claim(jobs.SEND, SLOT - timedelta(days=21), state="done", detail="three weeks ago")
    tick_at(settings, SLOT + timedelta(hours=1))
    smtp_server.wait_for(READERS + 1)
    states = [(r.slot_at, r.state) for r in job_runs("send")]
    assert states == [
        (SLOT - timedelta(days=21), "done"),
        (SLOT - timedelta(days=14), "skipped"),
        (SLOT - timedelta(days=7), "skipped"),
        (SLOT, "done"),
    ]
    assert len(issues()) == 1 and len(readers_mail(smtp_server)) == READERS
    [notice] = editor_mail(smtp_server)
    assert "Mon 09 Mar 2026" in notice.text and "Mon 16 Mar 2026" in notice.text


def test_a_new_installation_neither_reports_nor_warns_about_slots_before_it(weekly, smtp_server, caplog):
    settings = weekly(auto_send=True)
    caplog.set_level("INFO", logger="newsletter.scheduler")
    actions = tick_at(settings, SLOT + timedelta(days=2))
    [run] = job_runs("send")
    assert (run.slot_at, run.state, run.detail) == (SLOT, "skipped", jobs.BEFORE_INSTALL)
    assert "missed" not in " ".join(actions) and "nothing missed" in run.detail
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # nothing was missed: no warning
    assert "predates this installation" in caplog.text
    assert smtp_server.messages == [] and issues() == []
    # The next slot is the installation's first: it runs as usual.
    add_articles(settings, [article(10 + n, "data", at=SLOT + timedelta(days=3, hours=n)) for n in range(2)])
    tick_at(settings, SLOT + timedelta(days=7, hours=-1, minutes=1))  # 30 March, 08:01 BST
    smtp_server.wait_for(READERS)
    assert [r.state for r in job_runs("send")] == ["skipped", "done"]


def test_an_empty_week_sends_nothing_and_says_so(weekly, smtp_server, caplog):
    settings = weekly(auto_send=True)
    runs.claim(jobs.SEND, SLOT, state="done", detail="sent")
    next_slot = SLOT + timedelta(days=7) - timedelta(hours=1)  # 30 March, 07:00 UTC (BST)
    with session_scope() as session:  # last week's issue took every article
        session.add(
            Issue(
                number=1, status="sent", window_start=SLOT - timedelta(days=7), window_end=SLOT, slot_at=SLOT
            )
        )
    caplog.set_level("WARNING", logger="newsletter.scheduler")
    tick_at(settings, next_slot)
    [notice] = smtp_server.wait_for(1)
    assert notice.to == EDITOR and notice.message["Subject"] == "No issue this week"
    assert "No new articles" in notice.text
    assert "empty week" in caplog.text
    assert [r.state for r in job_runs("send") if r.slot_at == next_slot] == ["done"]
    assert [i.number for i in issues()] == [1]
    tick_at(settings, next_slot + timedelta(minutes=10))
    assert len(smtp_server.messages) == 1


def test_an_issue_never_approved_expires_after_the_grace_period(weekly, smtp_server):
    settings = weekly()
    tick_at(settings, SLOT)
    assert job_runs("send")[0].state == "waiting"
    tick_at(settings, SLOT + timedelta(hours=6, seconds=1))
    assert job_runs("send")[0].state == "expired"
    subjects = [m.message["Subject"] for m in editor_mail(smtp_server)]
    assert subjects == ["Issue 001 is waiting for approval", "A slot passed without a send"]
    assert "6-hour grace period after this slot ended" in editor_mail(smtp_server)[1].text
    assert issues()[0].status == "draft" and readers_mail(smtp_server) == []


def test_a_cancelled_issue_is_not_sent(weekly, smtp_server):
    from newsletter.issues.service import cancel_issue

    settings = weekly(auto_send=True)
    tick_at(settings, REVIEW)
    cancel_issue(1)
    tick_at(settings, SLOT)
    assert readers_mail(smtp_server) == []
    assert "cancelled" in runs.get(jobs.SEND, SLOT).detail


def test_a_send_orphaned_by_a_dead_process_is_finished_by_the_next_holder(weekly, smtp_server):
    settings = weekly(auto_send=True)
    clock.set(SLOT)
    assert runs.claim(jobs.SEND, SLOT, detail="running")  # a process claimed the slot and died
    tick_at(settings, SLOT + timedelta(seconds=20))  # within a lock lease: maybe still running
    assert runs.get(jobs.SEND, SLOT).state == "started" and issues() == []
    tick_at(settings, SLOT + timedelta(seconds=60))
    smtp_server.wait_for(READERS)
    assert job_runs("send")[0].state == "done" and issues()[0].status == "sent"


def test_many_concurrent_ticks_make_one_issue_and_one_send(weekly, smtp_server):
    settings = weekly(auto_send=True)
    clock.set(SLOT + timedelta(seconds=5))
    assert run_concurrently(lambda: jobs.tick(settings)) == []
    send_due(settings)
    smtp_server.wait_for(READERS)
    assert len(issues()) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == READERS
    assert len(readers_mail(smtp_server)) == READERS


def test_a_failing_send_is_recorded_reported_once_and_retried(weekly, smtp_server, monkeypatch):

    settings = weekly(auto_send=True)
    real = jobs.deliver
    monkeypatch.setattr(jobs, "deliver", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("SMTP down")))
    tick_at(settings, SLOT)
    [run] = job_runs("send")
    assert run.state == "failed" and "SMTP down" in run.detail
    tick_at(settings, SLOT + timedelta(minutes=1))  # before the retry delay: untouched
    [notice] = smtp_server.wait_for(1)
    assert notice.message["Subject"] == "The scheduler could not send this week's issue"
    monkeypatch.setattr(jobs, "deliver", real)
    tick_at(settings, SLOT + timedelta(minutes=6))
    smtp_server.wait_for(1 + READERS)
    assert job_runs("send")[0].state == "done"


def test_review_mail_goes_to_every_editor_account_when_no_list_is_set(weekly, smtp_server):
    settings = weekly(editor_emails=())
    with session_scope() as session:
        session.add(Editor(email="ada@example.org", password_hash="x", role="admin"))
        session.add(Editor(email="bo@example.org", password_hash="x"))
    tick_at(settings, REVIEW)
    smtp_server.wait_for(2)
    assert sorted(m.to for m in smtp_server.messages) == ["ada@example.org", "bo@example.org"]


# --- housekeeping ----------------------------------------------------------------------


def test_housekeeping_runs_each_job_once_per_period(weekly):
    settings = weekly()
    clock.set(SLOT)
    first = jobs.housekeeping(settings)
    assert [a.split(":")[0] for a in first] == ["resume", "retention"]
    assert jobs.housekeeping(settings) == []  # same period, any process: nothing
    clock.advance(timedelta(minutes=2))
    assert [a.split(":")[0] for a in jobs.housekeeping(settings)] == ["resume"]
    assert len(runs.runs("resume")) == 2 and len(runs.runs("retention")) == 1


def test_retention_deletes_rows_older_than_retention_days(weekly):
    settings = weekly(retention_days=30)
    now = SLOT
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    with session_scope() as session:
        for when in (old, recent):
            session.add(Event(kind="unsubscribe", created_at=when))
            session.add(WebhookReplay(provider="p", token=f"t{when:%d}", created_at=when))
            session.add(
                OutboxMessage(
                    created_at=when, sender="a@b", recipient="c@d", subject="s", message_id="m", raw=b"x"
                )
            )
            session.add(JobRun(job=jobs.SEND, slot_at=when, state="done", created_at=when))
            for status in ("sent", "pending"):  # mail still waiting is never deleted, however old
                session.add(
                    TransactionalMail(
                        kind="notice",
                        template="review",
                        subject="s",
                        to_email="e@x",
                        status=status,
                        created_at=when,
                    )
                )
            session.add(LoginThrottle(key=f"k{when:%d}", failures=9, updated_at=when))
        session.add(LoginThrottle(key="today", failures=9, updated_at=now - timedelta(hours=23)))
        reader = Subscriber(email="r@example.org", email_hash="h")
        session.add(reader)
        session.flush()
        for age in (settings.token_max_age_days + 2, settings.token_max_age_days):
            session.add(SubscribeRequest(subscriber_id=reader.id, created_at=now - timedelta(days=age)))
        session.add(
            JobRun(
                job="resume",
                slot_at=now - timedelta(days=3),
                state="done",
                created_at=now - timedelta(days=3),
            )
        )
    deleted = jobs.retention(settings, now)
    assert deleted == {
        "subscribe_requests": 1,
        "login_throttles": 2,
        "events": 1,
        "webhook_replays": 1,
        "outbox": 1,
        "transactional_mail": 1,
        "idempotency_keys": 0,
        "audit_entries": 0,
        "job_runs": 2,
    }
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        assert session.scalar(select(func.count()).select_from(JobRun)) == 1
        assert session.scalar(select(func.count()).select_from(TransactionalMail)) == 3


# --- the lock ----------------------------------------------------------------------------


class FakeWall:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_sqlite_lease_lock_one_holder_renewal_expiry_and_takeover(settings):
    engine = db.init_engine(settings.database_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("the lease row is the SQLite lock; PostgreSQL has its own test")
    wall = FakeWall(utc(2026, 1, 1))
    a = make_lock(engine, lease_seconds=30, holder="a", now=wall)
    b = make_lock(engine, lease_seconds=30, holder="b", now=wall)
    assert a.try_hold() is True
    assert b.try_hold() is False
    wall.now += timedelta(seconds=20)
    assert a.try_hold() is True  # renewed: lease now runs to +50 s
    wall.now += timedelta(seconds=25)
    assert b.try_hold() is False  # +45 s: a's renewed lease still holds
    wall.now += timedelta(seconds=10)  # a is dead: no renewal for 35 s
    assert b.try_hold() is True
    assert a.try_hold() is False  # a woke up: it lost the lock and knows it
    state = lock_state(engine, wall.now)
    assert state["holder"] == "b" and state["held"] is True
    b.release()
    assert lock_state(engine, wall.now)["holder"] is None
    assert a.try_hold() is True  # a released lock is free at once


def test_postgres_advisory_lock_one_holder_and_takeover_when_the_connection_dies(settings):
    engine = db.init_engine(settings.database_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (set NEWSLETTER_TEST_DATABASE_URL)")
    other_engine = db.make_engine(settings.database_url)
    a = make_lock(engine, lease_seconds=30, holder="a")
    b = make_lock(other_engine, lease_seconds=30, holder="b")
    try:
        assert a.try_hold() is True and a.try_hold() is True
        assert b.try_hold() is False
        state = lock_state(engine)
        assert state["holder"] == "a" and state["held"] and state["backend_pid"]
        a._conn.invalidate()  # the holder's connection dies, as when the process is killed
        a._conn = None
        # The server frees the lock when it notices the closed socket: within a bounded time, not at once.
        deadline = time.monotonic() + 10
        while not b.try_hold() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.try_hold() is True
        assert lock_state(engine)["holder"] == "b"
    finally:
        a.release()
        b.release()
        other_engine.dispose()


def test_only_the_lock_holder_runs_jobs(weekly, make_app):
    from newsletter.scheduler import Runner

    settings = weekly(auto_send=True, scheduler_lock_seconds=30)
    app_a, app_b = make_app(**_same(settings)), make_app(**_same(settings))
    a = Runner(app_a, blocking=False, mode=jobs.Mode())
    b = Runner(app_b, blocking=False, mode=jobs.Mode())
    try:
        assert a.hold() is True and b.hold() is False
        clock.set(REVIEW)
        assert b.tick() == [] and issues() == []
        assert a.tick() and len(issues()) == 1
    finally:
        a.lock.release()
        b.lock.release()


def _same(settings) -> dict:
    return dict(
        transport=settings.transport,
        schedule=settings.schedule,
        timezone=settings.timezone,
        editor_emails=settings.editor_emails,
        auto_send=settings.auto_send,
    )


# --- commands -------------------------------------------------------------------------------


def test_schedule_command_prints_local_and_utc_times_jobs_and_lock(weekly, make_app):
    settings = weekly()
    app = make_app(**_same(settings), review_hours=24)
    clock.set(utc(2026, 3, 27, 12))
    lock = make_lock(db.get_engine(), lease_seconds=30, holder="host:42:abc")
    assert lock.try_hold()
    runs.claim(jobs.SEND, SLOT, state="done", detail="Issue 001: sent: 5 sent")
    try:
        result = app.test_cli_runner().invoke(args=["schedule"])
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    out = result.output
    assert "'0 8 * * mon' in Europe/London" in out
    assert "Mon 2026-03-30 08:00 BST  = 2026-03-30 07:00 UTC" in out  # local and UTC, across the change
    assert "review from Sun 2026-03-29 08:00 BST = 2026-03-29 07:00 UTC" in out
    assert "done: Issue 001: sent: 5 sent" in out
    assert "held by host:42:abc" in out
    assert "feeds" in out and "off" in out


def test_schedule_command_says_when_the_lock_is_free(weekly, make_app):
    settings = weekly()
    result = make_app(**_same(settings)).test_cli_runner().invoke(args=["schedule"])
    assert result.exit_code == 0, result.output
    assert "free (no scheduler running)" in result.output


def test_bad_scheduler_settings_are_refused(make_app):
    from newsletter.config import ConfigError
    from newsletter.scheduler import Runner

    with pytest.raises(ConfigError, match="NEWSLETTER_SCHEDULER_LOCK_SECONDS"):
        Runner(make_app(scheduler_lock_seconds=1), blocking=False, mode=jobs.Mode())
    with pytest.raises(ConfigError, match="NEWSLETTER_SCHEDULER_TICK_SECONDS"):
        Runner(make_app(scheduler_tick_seconds=0), blocking=False, mode=jobs.Mode())
    with pytest.raises(ConfigError, match="never fires"):
        Runner(make_app(schedule="0 8 30 2 *"), blocking=False, mode=jobs.Mode())  # 30 February


def test_the_scheduler_command_refuses_bad_settings_with_a_clear_message(make_app):
    result = make_app(scheduler_lock_seconds=1).test_cli_runner().invoke(args=["scheduler"])
    assert result.exit_code != 0
    assert "NEWSLETTER_SCHEDULER_LOCK_SECONDS must be at least 3" in result.output


def test_hostile_issue_titles_are_escaped_in_editor_mails(weekly, smtp_server):
    from newsletter.issues.service import update_issue

    settings = weekly()
    tick_at(settings, REVIEW)
    update_issue(1, title='<script>alert(1)</script> & <a href="https://evil.example">x</a>')
    tick_at(settings, SLOT)
    [waiting] = [m for m in editor_mail(smtp_server) if "waiting" in m.message["Subject"]]
    assert "<script>" not in waiting.html and 'evil.example">' not in waiting.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in waiting.html


def test_the_test_clock_file_is_honoured_only_in_testing(make_settings, tmp_path, monkeypatch):
    from newsletter.scheduling import testclock

    path = tmp_path / "clock"
    target = utc(2030, 1, 7, 7, 59, 58)
    testclock.write_offset(path, target)
    monkeypatch.setenv(testclock.ENV_VAR, str(path))
    try:
        assert testclock.install_from_env(make_settings(env="development")) is False
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
        assert testclock.install_from_env(make_settings()) is True
        assert abs(clock.now() - target) < timedelta(seconds=5)
        path.write_text("garbage")  # half-written: the last good offset stays
        assert abs(clock.now() - target) < timedelta(seconds=5)
    finally:
        clock.set_source(None)


# --- where the scheduler runs ------------------------------------------------------------


def test_serve_runs_the_scheduler_in_process_and_it_hands_the_issue_to_the_sender(
    weekly, make_app, smtp_server
):
    """`newsletter serve` calls start_in_process: a BackgroundScheduler that
    takes the lock and runs the cycle; the issue it starts is left `sending`
    for serve's in-process sender (delivery.runner), not dispatched twice."""
    import time

    from newsletter import scheduler

    settings = weekly(auto_send=True)
    app = make_app(**_same(settings), scheduler_tick_seconds=0.2, scheduler_lock_seconds=3)
    runs.claim(jobs.SEND, SLOT - timedelta(days=7), state="done", detail="last week")
    clock.set(SLOT + timedelta(seconds=1))
    runner = scheduler.start_in_process(app)
    try:
        assert scheduler.start_in_process(app) is runner  # once per process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            runs.get(jobs.SEND, SLOT) and runs.get(jobs.SEND, SLOT).state == "done"
        ):
            time.sleep(0.1)
        run = runs.get(jobs.SEND, SLOT)
        assert run.state == "done" and "in-process sender" in run.detail
        assert [i.status for i in issues()] == ["sending"]
        assert lock_state(db.get_engine())["holder"] == runner.holder
    finally:
        scheduler.stop_in_process()
    assert lock_state(db.get_engine())["holder"] is None  # released on the way out


def test_the_web_app_alone_never_starts_the_scheduler(app):
    from newsletter import scheduler

    assert scheduler._runner is None
    assert not any(t.name.startswith("APScheduler") for t in threading.enumerate())
