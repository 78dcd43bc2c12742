"""Every way a send starts goes through one entry point,
``delivery.deliver.deliver``: the command a user runs (`newsletter issue
send`, through the installed script's ``main()``), the scheduler's tick (its
sender thread, ``delivery.runner``, then sends), the editor's "send now" form
and the JSON API's send.

Each test runs the real face on a real database (SQLite or PostgreSQL) and a
real SMTP server, and watches the real functions run (a profile hook in the
test's thread; nothing is replaced): ``deliver`` is called once, for that
issue; the one transition to ``sending`` (``send.start_send``) is made from
inside it; and every reader then gets the issue once."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import clock
from newsletter.__main__ import main as newsletter_main
from newsletter.access.tokens import create_token
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver
from newsletter.delivery.runner import Runner
from newsletter.delivery.send import start_send
from newsletter.issues.service import schedule_issue
from newsletter.scheduling import jobs
from tests.delivery_fixtures import add_subscribers, command_env, issue_row, make_issue

READERS = 3
# A Wednesday: the weekly slot (Monday 08:00 UTC) is past its grace period and
# its review is days away, so only the issue the test schedules is due.
WEDNESDAY = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(make_app, smtp_server):
    """The app sending to the real SMTP server (the editor fixtures log in to it)."""
    return make_app(transport=smtp_server.dsn, send_concurrency=1)


@pytest.fixture
def settings(app):
    settings = app.extensions["signal_settings"]
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    return settings


@contextmanager
def watched() -> Iterator[list[tuple[str, dict, object]]]:
    """The calls of ``deliver`` and ``start_send`` made meanwhile in this
    thread: (name, arguments, the caller's code)."""
    names = {deliver.__code__: "deliver", start_send.__code__: "start_send"}
    calls: list[tuple[str, dict, object]] = []

    def hook(frame, event, _arg):
        if event == "call" and frame.f_code in names:
            calls.append((names[frame.f_code], dict(frame.f_locals), frame.f_back.f_code))

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def assert_started_by_deliver(calls, **arguments) -> None:
    """One ``deliver`` call with ``arguments``; the one ``start_send`` made inside it."""
    delivers = [args for name, args, _ in calls if name == "deliver"]
    assert len(delivers) == 1, f"deliver was called {len(delivers)} times"
    expected = {"number": 1} | arguments
    assert {key: delivers[0][key] for key in expected} == expected
    starts = [(args, caller) for name, args, caller in calls if name == "start_send"]
    assert len(starts) == 1, f"start_send was called {len(starts)} times"
    [(args, caller)] = starts
    assert args["number"] == 1 and caller is deliver.__code__, f"start_send was called by {caller.co_name}"


def send_in_background(settings, smtp_server) -> None:
    """What serve's (or the scheduler's) sender thread does on its next pass."""
    assert issue_row(settings, 1).status == "sending"
    assert smtp_server.messages == [], "nothing is sent by the request or the tick itself"
    assert Runner(settings).tick() == READERS
    assert_every_reader_got_it(settings, smtp_server)


def assert_every_reader_got_it(settings, smtp_server) -> None:
    received = sorted(message.to for message in smtp_server.wait_for(READERS))
    assert received == [f"reader{n}@example.org" for n in range(READERS)]
    assert issue_row(settings, 1).status == "sent"


def test_the_command_a_user_runs_starts_the_send_through_deliver(settings, smtp_server, monkeypatch):
    for key in [key for key in os.environ if key.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(key)
    for key, value in command_env(settings, NEWSLETTER_SEND_CONCURRENCY="1").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["newsletter", "issue", "send", "1", "--yes"])
    with watched() as calls, pytest.raises(SystemExit) as exited:
        newsletter_main()
    assert exited.value.code == 0
    assert_started_by_deliver(calls, here=True)  # this process sends, and waits
    assert_every_reader_got_it(settings, smtp_server)


def test_the_scheduler_tick_starts_the_send_through_deliver_and_its_sender_sends_it(settings, smtp_server):
    clock.set(WEDNESDAY)
    schedule_issue(1, WEDNESDAY + timedelta(minutes=1), by="editor@example.org")
    clock.set(WEDNESDAY + timedelta(minutes=2))
    with watched() as calls:
        # as `newsletter scheduler` and serve's scheduler tick: the send is started, not sent
        actions = jobs.tick(settings, mode=jobs.Mode(dispatch=False))
    assert any(action.startswith("timed Issue 001") for action in actions), actions
    assert_started_by_deliver(calls, here=False)
    send_in_background(settings, smtp_server)


def test_the_editors_send_now_starts_the_send_through_deliver(settings, smtp_server, editor):
    assert editor.get("/editor/issues/1/send").status_code == 200
    with watched() as calls:
        answer = editor.post("/editor/issues/1/send", data={"confirm_number": "1"})
    assert answer.status_code == 302
    assert_started_by_deliver(calls, here=False, continue_started=False)
    send_in_background(settings, smtp_server)


def test_the_api_send_starts_the_send_through_deliver(settings, smtp_server, client):
    with session_scope() as session:
        _, token = create_token(session, name="agent", scopes=("issues:send",), created_by="test")
    with watched() as calls:
        answer = client.post("/api/v1/issues/1/send", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert_started_by_deliver(calls, here=False, continue_started=False)
    send_in_background(settings, smtp_server)


class _CountedRunner(Runner):
    """serve's sender thread, telling the test when a pass is over."""

    def __init__(self, settings, poll: float):
        super().__init__(settings, poll=poll)
        self.passed = threading.Event()

    def tick(self) -> int:
        sent = super().tick()
        self.passed.set()
        return sent


def test_a_send_started_in_the_process_wakes_its_idle_sender(settings, smtp_server, editor):
    """serve's sender thread looks for work once a minute here; the editor's
    "send now" in the same process wakes it at once, so the first message
    does not wait for its next look."""
    runner = _CountedRunner(settings, poll=60).start()
    try:
        assert runner.passed.wait(10), "the sender made its first pass"
        runner.passed.clear()  # nothing to send: it is idle for a minute now
        answer = editor.post("/editor/issues/1/send", data={"confirm_number": "1"})
        assert answer.status_code == 302
        assert runner.passed.wait(20), "the send woke the idle sender"
        assert_every_reader_got_it(settings, smtp_server)
    finally:
        runner.shutdown(timeout=10)
