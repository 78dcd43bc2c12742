"""A send that this process sends starts on its first readers' rows while the
fan-out adds the rest (``send.start_send(first_rows=…)``, then
``send.complete_fan_out``), on the configured database (SQLite, or
PostgreSQL with NEWSLETTER_TEST_DATABASE_URL): every reader gets the issue
once, the senders wait for the fan-out instead of finishing, a fan-out whose
process died is taken over when its lease runs out, and a cancel stops it."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter import clock
from newsletter.db import init_engine, session_scope
from newsletter.delivery import deliver as deliver_module
from newsletter.delivery import dispatch, processes, send
from newsletter.delivery.deliver import deliver
from newsletter.models import OutboxMessage
from tests.delivery_fixtures import (
    add_subscribers,
    command_env,
    deliveries,
    issue_row,
    make_issue,
    run_python,
)

READERS = 60


@pytest.fixture
def small_parts(monkeypatch):
    """The first transaction fans out 5 readers, then parts of 7 ids."""
    monkeypatch.setattr(deliver_module, "FIRST_FAN_OUT_ROWS", 5)
    monkeypatch.setattr(send, "FAN_OUT_PART", 7)


def one_each(recipients) -> None:
    assert Counter(Counter(recipients).values()) == {1: READERS}, "every reader exactly once"


def test_the_senders_start_on_the_first_readers_while_the_fan_out_adds_the_rest(
    make_settings, smtp_server, small_parts, monkeypatch
):
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=2, send_processes=1)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    calls, seen = [], []
    fan_out, last_reader_id = send.fan_out, send.last_reader_id

    def parts_after_the_first_messages(session):
        """The fan-out's parts start once the first readers' messages are in
        and the senders have found the queue empty: had they finished then,
        nobody would send the rest."""
        deadline = time.monotonic() + 20
        while len(smtp_server.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(len(smtp_server.messages))
        time.sleep(0.3)
        return last_reader_id(session)

    def counted(session, issue_id, waves=None, ids=None):
        calls.append(ids)
        return fan_out(session, issue_id, waves, ids)

    monkeypatch.setattr(send, "last_reader_id", parts_after_the_first_messages)
    monkeypatch.setattr(send, "fan_out", counted)
    totals = []

    counts = deliver(settings, 1, here=True, progress=lambda start, _batch: totals.append(start.total))

    assert calls[0] == (0, calls[0][1]) and calls[1:] == [
        (low, low + 6) for low in range(0, calls[-1][0] + 1, 7)
    ]
    assert seen == [5], "the first readers' messages went out before the fan-out's next part"
    one_each(message.to for message in smtp_server.messages)
    row = issue_row(settings, 1)
    assert (row.status, row.recipients, row.sent_count, row.fanning_out_until) == (
        "sent",
        READERS,
        READERS,
        None,
    )
    assert (counts.status, counts.sent) == ("sent", READERS)
    assert totals[0] == 0 and set(totals) == {0, READERS}, (
        "the progress learns the total when the fan-out ends"
    )


@pytest.mark.slow
def test_forked_senders_wait_for_the_fan_out_too(make_settings, small_parts, monkeypatch):
    """The sending processes `issue send` forks see the fan-out's lease in the
    database: they poll for its next parts instead of finishing."""
    settings = make_settings(transport="outbox://", send_concurrency=2, send_processes=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    monkeypatch.setattr(processes, "_context", lambda _settings: multiprocessing.get_context("fork"))

    counts = deliver(settings, 1, here=True, stop=threading.Event())

    with session_scope() as session:
        one_each(session.execute(select(OutboxMessage.recipient)).scalars())
    assert (counts.status, counts.sent, issue_row(settings, 1).recipients) == ("sent", READERS, READERS)


def test_a_fan_out_whose_process_died_is_taken_over_when_its_lease_runs_out(
    make_settings, smtp_server, small_parts
):
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    issue = send.start_send(settings, 1, first_rows=5)  # …and its process dies here
    assert issue.recipients == 5 and issue.fanning_out_until is not None

    stats = dispatch.run_pool(settings, issue.id, wait=False)
    assert (stats.sent, stats.stopped_because) == (5, "waiting"), "the lease is open work: not done"
    assert not send.finish_issue(issue.id), "an issue whose fan-out goes on is not finished"
    assert send.take_over_fan_outs() == 0, "a live lease is left to its holder"

    clock.advance(timedelta(seconds=send.FAN_OUT_LEASE_SECONDS + 1))
    assert send.resume_unfinished(settings) == [1]  # (what serve, the scheduler and the workers call)
    stats = dispatch.run_pool(settings, issue.id, wait=False)

    assert stats.sent == READERS - 5
    assert send.finish_issue(issue.id)
    one_each(message.to for message in smtp_server.messages)
    row = issue_row(settings, 1)
    assert (row.status, row.recipients, row.fanning_out_until) == ("sent", READERS, None)


def test_a_send_continued_after_its_process_died_completes_the_fan_out(
    make_settings, smtp_server, small_parts
):
    """`issue send N` again (the dispatch loop takes over the stale lease)."""
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=2, send_processes=1)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    send.start_send(settings, 1, first_rows=5)
    clock.advance(timedelta(seconds=send.FAN_OUT_LEASE_SECONDS + 1))
    stop = threading.Event()
    give_up = threading.Timer(30, stop.set)  # without the take-over the senders would wait for ever
    give_up.start()
    try:
        counts = deliver(settings, 1, here=True, stop=stop)
    finally:
        give_up.cancel()

    assert (counts.status, counts.sent, counts.total) == ("sent", READERS, READERS)
    one_each(message.to for message in smtp_server.messages)


def test_a_cancel_stops_the_fan_out(make_settings, small_parts):
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    issue = send.start_send(settings, 1, first_rows=5)
    send.cancel_sending(1)

    assert send.complete_fan_out(issue.id) is None
    assert Counter(row.status for row in deliveries(settings, issue.id)) == {"skipped": 5}
    row = issue_row(settings, 1)
    assert (row.status, row.fanning_out_until) == ("cancelled", None)


def test_a_list_no_longer_than_the_first_rows_is_fanned_out_at_once(make_settings):
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 5)

    issue = send.start_send(settings, 1, first_rows=5)

    assert (issue.recipients, issue.fanning_out_until) == (5, None)
    assert len(deliveries(settings, issue.id)) == 5


def test_an_interrupted_fan_out_is_taken_over_at_once(make_settings, small_parts, monkeypatch):
    """Ctrl-C (or an error) in the fan-out ends its lease: the next
    `issue send N` completes it now, not when the lease would have run out."""
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    issue = send.start_send(settings, 1, first_rows=5)
    fan_out, calls = send.fan_out, []

    def interrupted_at_the_second_part(session, issue_id, waves=None, ids=None):
        calls.append(ids)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fan_out(session, issue_id, waves, ids)

    monkeypatch.setattr(send, "fan_out", interrupted_at_the_second_part)
    with pytest.raises(KeyboardInterrupt):
        send.complete_fan_out(issue.id)
    monkeypatch.setattr(send, "fan_out", fan_out)

    assert issue_row(settings, 1).fanning_out_until is not None
    assert send.take_over_fan_outs() == 1
    row = issue_row(settings, 1)
    assert (row.recipients, row.fanning_out_until, len(deliveries(settings, issue.id))) == (
        READERS,
        None,
        READERS,
    )


@pytest.mark.slow
def test_issue_send_with_more_readers_than_the_first_rows(make_settings, tmp_path):
    """The real command, its live progress bar and its forked sender: a list
    longer than FIRST_FAN_OUT_ROWS goes out whole, once each."""
    readers = deliver_module.FIRST_FAN_OUT_ROWS + 100
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, readers)
    env = command_env(settings, NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"), FORCE_COLOR="1")

    result = run_python("-m", "newsletter", "issue", "send", "1", "--yes", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{readers} sent, 0 failed" in result.stdout
    with session_scope() as session:
        recipients = session.execute(select(OutboxMessage.recipient)).scalars().all()
    assert len(recipients) == len(set(recipients)) == readers
    row = issue_row(settings, 1)
    assert (row.status, row.recipients, row.fanning_out_until) == ("sent", readers, None)
