"""The sending pipeline on the configured database (SQLite, or PostgreSQL with
NEWSLETTER_TEST_DATABASE_URL): fan-out, one winner, leases, retries, bounces,
skips, pause/resume/cancel, and an end-to-end send through a real SMTP server
whose One-Click unsubscribe links are then used."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import event, select

from newsletter import clock
from newsletter.db import get_engine, init_engine, session_scope
from newsletter.delivery import dispatch, fanout, queue, send
from newsletter.delivery.deliver import deliver
from newsletter.models import Delivery, Subscriber
from newsletter.suppression import is_suppressed, suppress
from tests.delivery_fixtures import add_subscribers, deliveries, issue_row, make_issue, subscriber
from tests.helpers import run_concurrently

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
deliveries_table = Delivery.__table__


def by_status(rows):
    return Counter(r.status for r in rows)


@pytest.fixture
def sending_settings(make_settings, smtp_server):
    def build(**overrides):
        values = dict(transport=smtp_server.dsn, send_concurrency=2, retry_base_seconds=10, max_attempts=3)
        values.update(overrides)
        settings = make_settings(**values)
        init_engine(settings.database_url)
        return settings

    return build


def test_fan_out_is_one_insert_select_of_active_unsuppressed_readers(sending_settings):
    settings = sending_settings()
    issue_id = make_issue(settings, 1)
    add_subscribers(settings, 10)
    add_subscribers(settings, 3, prefix="agents", topics="agents")
    add_subscribers(settings, 3, prefix="pending", status="pending")
    add_subscribers(settings, 2, prefix="left", status="unsubscribed")
    add_subscribers(settings, 2, prefix="sup")
    with session_scope() as session:
        suppress(session, "sup0@example.org", "hard_bounce")
        suppress(session, "sup1@example.org", "erased")

    statements = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO DELIVERY"):
            statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        issue = send.start_send(settings, 1)
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    assert len(statements) == 1 and "SELECT" in statements[0].upper(), "fan-out must be one INSERT … SELECT"
    assert "ON CONFLICT" not in statements[0].upper(), "an issue's first fan-out has nothing to collide with"
    assert issue.status == "sending" and issue.recipients == 13
    rows = deliveries(settings, issue_id)
    assert sorted(r.email for r in rows) == sorted(
        [f"reader{i}@example.org" for i in range(10)] + [f"agents{i}@example.org" for i in range(3)]
    )
    assert {r.topics for r in rows if r.email.startswith("agents")} == {"agents"}
    assert by_status(rows) == {"pending": 13}
    # running the fan-out again adds nothing (unique issue × subscriber, ON CONFLICT DO NOTHING)
    with session_scope() as session:
        assert fanout.fan_out(session, issue_id) == 0
    assert len(deliveries(settings, issue_id)) == 13


def test_exactly_one_of_many_concurrent_starts_wins(sending_settings):
    settings = sending_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 20)
    outcomes = []

    def start():
        try:
            send.start_send(settings, 1)
            outcomes.append("won")
        except send.AlreadySending:
            outcomes.append("already")

    errors = run_concurrently(start, 4)
    assert sorted(outcomes) == ["already", "already", "already", "won"], errors
    assert len(deliveries(settings)) == 20


def test_draft_and_sent_issues_cannot_start(sending_settings):
    settings = sending_settings()
    make_issue(settings, 1, status="draft")
    with pytest.raises(send.NotSendable):
        send.start_send(settings, 1)
    with pytest.raises(send.UnknownIssue):
        send.start_send(settings, 99)


def test_end_to_end_every_reader_gets_one_message_and_one_click_unsubscribes_only_them(
    make_app, live_server_factory, smtp_server
):
    server = live_server_factory(make_app, transport=smtp_server.dsn, send_concurrency=3)
    settings = server.app.extensions["signal_settings"]
    init_engine(settings.database_url)
    make_issue(settings, 1)
    active = add_subscribers(settings, 40)
    add_subscribers(settings, 10, prefix="agents", topics="agents")
    add_subscribers(settings, 5, prefix="pending", status="pending")

    counts = deliver(settings, 1, here=True)

    assert (counts.status, counts.sent, counts.failed, counts.skipped, counts.total) == ("sent", 50, 0, 0, 50)
    received = smtp_server.wait_for(50)
    assert len(received) == 50
    per_reader = Counter(m.to for m in received)
    assert set(per_reader.values()) == {1}, "exactly one message per reader"
    assert set(per_reader) == {f"reader{i}@example.org" for i in range(40)} | {
        f"agents{i}@example.org" for i in range(10)
    }
    issue = issue_row(settings, 1)
    assert (issue.sent_count, issue.failed_count, issue.recipients) == (50, 0, 50)
    # every row records its outcome: sent when, with the Message-ID the reader got
    rows = {r.email: r for r in deliveries(settings, issue.id)}
    for message in received:
        row = rows[message.to]
        assert row.status == "sent" and row.attempts == 1 and row.last_error == ""
        assert row.message_id == row.provider_message_id == message.message["Message-ID"]
        sent_at = row.sent_at if row.sent_at.tzinfo else row.sent_at.replace(tzinfo=UTC)
        assert abs((sent_at - clock.now()).total_seconds()) < 120
        assert row.lease_owner is None and row.next_attempt_at is None

    links = {}
    for message in received:
        parsed = message.message
        header = parsed["List-Unsubscribe"]
        url = header.split("<", 1)[1].split(">", 1)[0]
        assert url.startswith(f"{server.url}/unsubscribe/")
        assert url in message.text, "the body carries the same personal link"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["To"].addresses[0].addr_spec == message.to
        links[message.to] = url
    assert len(set(links.values())) == 50, "every reader has their own link"
    # topic readers got their variant: only the agents section
    agents_mail = next(m for m in received if m.to == "agents0@example.org")
    assert "Agents story 0" in agents_mail.text and "Safety story 0" not in agents_mail.text
    reader_mail = next(m for m in received if m.to == "reader0@example.org")
    assert "Safety story 0" in reader_mail.text

    target = "reader7@example.org"
    response = requests.post(
        links[target],
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 200
    with session_scope() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses[target] == "unsubscribed"
    assert [e for e, s in statuses.items() if s == "unsubscribed"] == [target]
    assert len(active) == 40


def test_temporary_refusals_are_retried_with_backoff_until_delivered(sending_settings, smtp_server):
    settings = sending_settings(max_attempts=5)
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 12)
    refusing = {"on": True}
    tries = Counter()

    def respond(rcpt):
        tries[rcpt] += 1
        if refusing["on"] and rcpt in ("reader1@example.org", "reader2@example.org"):
            return "451 4.7.1 greylisted, try again later"
        if refusing["on"] and rcpt == "reader3@example.org":
            return "421 4.7.0 too many connections, closing"
        return None

    smtp_server.respond = respond
    issue = send.start_send(settings, 1)
    stats = dispatch.dispatch(settings, issue_id=issue.id, worker_id="w1", wait=False)
    assert stats.sent == 9 and stats.retried == 3
    rows = {r.email: r for r in deliveries(settings)}
    for address in ("reader1@example.org", "reader2@example.org", "reader3@example.org"):
        row = rows[address]
        assert row.status == "pending" and row.attempts == 1
        assert row.last_error.startswith(("451", "421"))
        delay = (row.next_attempt_at - T0).total_seconds()
        assert 5 <= delay <= 10, "first retry after base/2..base seconds (jitter)"
    # nothing is due yet: a second pass sends nothing
    assert dispatch.dispatch(settings, issue_id=issue.id, worker_id="w1", wait=False).sent == 0
    clock.advance(timedelta(seconds=11))
    second = dispatch.dispatch(settings, issue_id=issue.id, worker_id="w1", wait=False)
    assert second.retried == 3  # still refused: second attempt, longer backoff
    row = {r.email: r for r in deliveries(settings)}["reader1@example.org"]
    assert row.attempts == 2 and 10 <= (row.next_attempt_at - clock.now()).total_seconds() <= 20
    refusing["on"] = False
    clock.advance(timedelta(seconds=21))
    third = dispatch.dispatch(settings, issue_id=issue.id, worker_id="w1", wait=False)
    assert third.sent == 3 and third.stopped_because == "done"
    assert send.finish_issue(issue.id)
    assert by_status(deliveries(settings)) == {"sent": 12}
    assert Counter(m.to for m in smtp_server.messages)["reader1@example.org"] == 1
    assert tries["reader1@example.org"] == 3


def test_permanent_refusals_bounce_suppress_and_are_never_retried(sending_settings, smtp_server):
    settings = sending_settings()
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 6)
    tries = Counter()

    def respond(rcpt):
        tries[rcpt] += 1
        return "550 5.1.1 no such mailbox" if rcpt in ("reader0@example.org", "reader4@example.org") else None

    smtp_server.respond = respond
    counts = deliver(settings, 1, here=True)
    assert (counts.sent, counts.failed, counts.status) == (4, 2, "sent")
    rows = {r.email: r for r in deliveries(settings)}
    assert rows["reader0@example.org"].status == "failed"
    assert rows["reader0@example.org"].last_error.startswith("bounced: 550")
    assert subscriber(settings, "reader0@example.org").status == "bounced"
    assert subscriber(settings, "reader1@example.org").status == "active"
    with session_scope() as session:
        assert is_suppressed(session, "reader4@example.org")
        assert not is_suppressed(session, "reader1@example.org")
    clock.advance(timedelta(days=1))
    issue_id = issue_row(settings, 1).id
    assert dispatch.dispatch(settings, issue_id=issue_id, worker_id="w2", wait=False).claimed == 0
    assert tries["reader0@example.org"] == 1, "a permanent failure is never retried"
    # and the next issue does not even try the bounced reader
    make_issue(settings, 2)
    assert send.start_send(settings, 2).recipients == 4


def test_transient_failures_give_up_after_max_attempts_with_the_reason(sending_settings, smtp_server):
    settings = sending_settings(max_attempts=3)
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 3)
    smtp_server.respond = lambda rcpt: "452 4.2.2 mailbox full" if rcpt == "reader1@example.org" else None
    issue = send.start_send(settings, 1)
    for _ in range(4):
        dispatch.dispatch(settings, issue_id=issue.id, worker_id="w", wait=False)
        clock.advance(timedelta(hours=1))
    row = {r.email: r for r in deliveries(settings)}["reader1@example.org"]
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("gave up after 3 attempts: 452")
    assert subscriber(settings, "reader1@example.org").status == "active", "a full mailbox is not a bounce"
    assert send.finish_issue(issue.id)


def test_readers_who_leave_after_fan_out_are_skipped_with_the_reason(sending_settings, smtp_server):
    settings = sending_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 5)
    send.start_send(settings, 1)
    with session_scope() as session:
        gone = session.scalars(select(Subscriber).where(Subscriber.email == "reader1@example.org")).one()
        gone.status = "unsubscribed"
        suppress(session, "reader3@example.org", "complaint")
    counts = deliver(settings, 1, here=True)
    assert (counts.sent, counts.skipped, counts.failed, counts.status) == (3, 2, 0, "sent")
    rows = {r.email: r for r in deliveries(settings)}
    assert rows["reader1@example.org"].last_error == "subscriber unsubscribed since fan-out"
    assert rows["reader3@example.org"].last_error == "address suppressed (complaint)"
    assert {m.to for m in smtp_server.messages} == {
        "reader0@example.org",
        "reader2@example.org",
        "reader4@example.org",
    }
    assert issue_row(settings, 1).skipped_count == 2


def test_an_expired_lease_is_reclaimed_so_a_dead_worker_loses_nothing(sending_settings, smtp_server):
    settings = sending_settings(send_lease_seconds=60)
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 8)
    issue = send.start_send(settings, 1)
    claimed = queue.claim_batch(settings, "dead-worker", 3, issue.id)  # …and then the worker dies
    assert len(claimed) == 3
    first = dispatch.dispatch(settings, issue_id=issue.id, worker_id="alive", wait=False)
    assert first.sent == 5 and first.stopped_because == "waiting"
    assert by_status(deliveries(settings)) == {"sent": 5, "sending": 3}
    clock.advance(timedelta(seconds=61))
    second = dispatch.dispatch(settings, issue_id=issue.id, worker_id="alive", wait=False)
    assert second.sent == 3
    rows = deliveries(settings)
    assert by_status(rows) == {"sent": 8}
    assert sorted(r.attempts for r in rows) == [1] * 5 + [2] * 3
    assert len(smtp_server.messages) == 8


def test_progress_starts_from_the_counts_of_a_fresh_or_a_continued_send(sending_settings, smtp_server):
    """A fresh start hands the progress display its counts without asking the
    database again (every row pending); a continued one reclaims the dead
    sender's leases, then counts what is left."""
    settings = sending_settings(send_lease_seconds=60)
    clock.set(T0)
    make_issue(settings, 1)
    make_issue(settings, 2)
    add_subscribers(settings, 7)
    add_subscribers(settings, 2, prefix="left", status="unsubscribed")
    starts = []

    def progress(start, batch):
        starts.append((start.status, start.total, start.pending, start.sending, start.sent))

    fresh = deliver(settings, 1, here=True, progress=progress)
    assert fresh.sent == 7
    assert set(starts) == {("sending", 7, 7, 0, 0)}

    issue = send.start_send(settings, 2)
    queue.claim_batch(settings, "dead-worker", 3, issue.id)  # …and then that sender dies
    clock.advance(timedelta(seconds=61))
    starts.clear()
    continued = deliver(settings, 2, here=True, progress=progress)
    assert (continued.status, continued.sent) == ("sent", 7)
    assert set(starts) == {("sending", 7, 7, 0, 0)}, "the dead sender's 3 rows are pending again"
    assert len(smtp_server.messages) == 14


def test_pause_resume_and_cancel_mid_send(sending_settings, smtp_server):
    settings = sending_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 6)
    issue = send.start_send(settings, 1)
    send.pause_issue(1)
    stats = dispatch.dispatch(settings, issue_id=issue.id, worker_id="w", wait=False)
    assert stats.sent == 0 and stats.stopped_because == "paused"
    with pytest.raises(send.NotSendable):
        send.pause_issue(1)
    send.resume_issue(1)
    size_one = sending_settings(send_rate=1)  # batches of one second's worth = 1 message
    queue.claim_batch(size_one, "w", 2, issue.id)  # two rows on the wire
    cancelled = send.cancel_sending(1)
    assert cancelled.status == "cancelled"
    rows = deliveries(settings)
    assert by_status(rows) == {"skipped": 4, "sending": 2}
    assert {r.last_error for r in rows if r.status == "skipped"} == {"issue cancelled"}
    assert len(smtp_server.messages) == 0


def test_send_rate_limits_batches(sending_settings, smtp_server):
    settings = sending_settings(send_rate=50, send_concurrency=1)
    make_issue(settings, 1)
    add_subscribers(settings, 60)
    started = datetime.now(UTC)
    counts = deliver(settings, 1, here=True)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert counts.sent == 60
    assert elapsed >= 0.2, "60 messages at 50/s with a one-second burst need at least 0.2 s"


@pytest.mark.parametrize("sessions, largest", [(2, 200), (16, 100)])
def test_the_threads_of_a_process_share_one_budget_of_messages_in_hand(
    sending_settings, smtp_server, sessions, largest
):
    """Over SMTP a thread drives two connections and holds its whole batch
    built, so a process's threads share SmtpTransport.IN_FLIGHT (800)
    messages: batches of 200 (100 a connection) for one thread, 100 for
    8 threads, whatever the list."""
    settings = sending_settings(send_concurrency=sessions)
    make_issue(settings, 1)
    add_subscribers(settings, 900)
    issue = send.start_send(settings, 1)
    sizes = []
    stats = dispatch.run_pool(
        settings, issue.id, on_batch=lambda batch: sizes.append(batch.claimed), wait=False
    )
    assert stats.sent == 900 and len(smtp_server.messages) == 900
    assert max(sizes) == largest


def test_each_sending_loop_starts_with_a_small_batch(sending_settings, smtp_server):
    """A batch is built and DKIM-signed whole before its first message goes on
    the wire, so each sending thread's first batch is FIRST_BATCH messages
    and the later ones full: a send's first message leaves once ten are
    built and signed, not 200."""
    settings = sending_settings(send_concurrency=4)  # two threads, two connections each
    make_issue(settings, 1)
    add_subscribers(settings, 900)
    issue = send.start_send(settings, 1)
    sizes = defaultdict(list)

    def by_thread(batch):
        sizes[threading.current_thread().name].append(batch.claimed)

    stats = dispatch.run_pool(settings, issue.id, on_batch=by_thread, wait=False)

    assert stats.sent == 900 and len(smtp_server.messages) == 900
    assert len(sizes) == 2
    assert [each[0] for each in sizes.values()] == [dispatch.FIRST_BATCH] * 2
    assert max(size for each in sizes.values() for size in each[1:]) == 200


def test_resume_unfinished_finishes_or_reports_sending_issues(sending_settings):
    settings = sending_settings()
    make_issue(settings, 1)
    make_issue(settings, 2)
    add_subscribers(settings, 2)
    send.start_send(settings, 1)
    send.start_send(settings, 2)
    with session_scope() as session:  # issue 2's rows were all sent before a crash
        for row in session.scalars(select(Delivery).where(Delivery.issue_id == issue_row(settings, 2).id)):
            row.status = "sent"
    assert send.resume_unfinished(settings) == [1]
    assert issue_row(settings, 2).status == "sent"


def test_background_runner_resumes_an_unfinished_send(sending_settings, smtp_server):
    from newsletter.delivery.runner import Runner

    settings = sending_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 9)
    send.start_send(settings, 1)  # …and the process that started it went away
    assert Runner(settings).tick() == 9
    assert issue_row(settings, 1).status == "sent"
    assert len(smtp_server.wait_for(9)) == 9


@pytest.mark.parametrize("writer", ["heartbeat", "reclaim"])
def test_lease_housekeeping_never_deadlocks_with_a_senders_record(sending_settings, writer):
    """Two writers touch a sender's ``sending`` rows in transactions of their
    own while the sender records the outcome of the same rows, locking them
    in its own order: the heartbeat renewing its leases, and another
    sender reclaiming leases that ran out (a sender slower than its lease).
    On PostgreSQL, such a writer that waited for a row the record holds,
    while holding one the record needs next, was a deadlock (the heartbeat's
    was seen in a 300,000-message send: one batch's record aborted). Both
    now skip the rows being written, which are leaving ``sending`` anyway."""
    settings = sending_settings(send_lease_seconds=60)
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 2)
    issue = send.start_send(settings, 1)
    first, second = (row.id for row in queue.claim_batch(settings, "w", 2, issue.id))
    if writer == "reclaim":
        clock.advance(timedelta(seconds=61))  # the sender is slow: its leases ran out
    failures: list[BaseException] = []

    def mark(connection, row_id: int) -> None:
        connection.execute(
            deliveries_table.update().where(deliveries_table.c.id == row_id).values(last_error="recorded")
        )

    def housekeeping() -> None:
        try:
            if writer == "heartbeat":
                queue.renew_leases(settings, "w")
            else:
                queue.reclaim_expired_leases(settings, issue.id)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    with get_engine().connect() as record:
        transaction = record.begin()
        mark(record, second)  # the record holds the second row…
        other = threading.Thread(target=housekeeping)
        other.start()
        other.join(0.5)  # …while the other writer takes the first (and, before, waited for the second)
        try:
            mark(record, first)  # …and then wants the first
            transaction.commit()
        except BaseException as exc:
            failures.append(exc)
            transaction.rollback()
    other.join(30)

    assert not other.is_alive() and failures == []
    assert {r.last_error for r in deliveries(settings, issue.id)} == {"recorded"}
