"""The wire journal (``delivery.journal``): what a sender killed mid-batch
had already handed to the server is recorded as sent, not sent again.

The dead sender is a real process that writes its journal through the real
class and then SIGKILLs itself; the live one is this process, holding its
journal's lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import clock
from newsletter.delivery import dispatch, journal, queue, send
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import SendResult
from tests.delivery_fixtures import add_subscribers, deliveries, make_issue
from tests.helpers import race

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

DEAD_SENDER = textwrap.dedent(
    """
    import os, signal, sys, types
    from newsletter.delivery.journal import Journal
    instance, worker, *rows = sys.argv[1:]
    journal = Journal(types.SimpleNamespace(instance_path=instance), worker)
    for row in rows:
        message = types.SimpleNamespace(delivery_id=int(row), message_id=f"<m{row}@example.org>")
        odd = "\\t\\r\\n" if row == rows[0] else ""  # a provider's id may hold anything
        journal.accepted(message, types.SimpleNamespace(provider_message_id=f"p{row}{odd}"))
    os.write(journal.fd, b"99999\\t17")  # the kill cut its last line short
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture
def sending(make_settings, smtp_server):
    settings = make_settings(transport=smtp_server.dsn, send_lease_seconds=60, send_concurrency=1)
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 8)
    issue = send.start_send(settings, 1)
    return settings, issue.id


def die_after_journalling(settings, worker: str, row_ids: list[int]) -> None:
    died = subprocess.run(
        [sys.executable, "-c", DEAD_SENDER, settings.instance_path, worker, *map(str, row_ids)],
        capture_output=True,
    )
    assert died.returncode == -9, died.stderr.decode()


def test_a_dead_senders_journal_is_recorded_and_nobody_it_sent_gets_it_again(sending, smtp_server):
    settings, issue_id = sending
    dead = queue.claim_batch(settings, "host:1:dead:0", 4, issue_id)
    other = queue.claim_batch(settings, "host:2:other:0", 1, issue_id)
    # The dead sender's server took three of its four; its journal also names a
    # row another sender holds now (never settled under someone else's lease).
    die_after_journalling(settings, "host:1:dead:0", [r.id for r in dead[:3]] + [other[0].id])

    assert queue.reclaim_expired_leases(settings, issue_id) == 0  # no lease has expired yet…
    rows = {r.id: r for r in deliveries(settings)}
    for row in dead[:3]:  # …but what the journal lists is recorded, as the sender would have
        assert rows[row.id].status == "sent"
        assert rows[row.id].message_id == f"<m{row.id}@example.org>"
        assert rows[row.id].provider_message_id == f"p{row.id}"
        assert rows[row.id].sent_at is not None and rows[row.id].lease_owner is None
    assert rows[dead[3].id].status == "sending"  # not in the journal: the server never took it
    assert rows[other[0].id].status == "sending" and rows[other[0].id].lease_owner == "host:2:other:0"
    assert list(journal.directory(settings).glob("*")) == []  # settled once, then gone

    clock.advance(timedelta(seconds=61))
    finished = dispatch.dispatch(settings, issue_id=issue_id, worker_id="host:3:new:0", wait=False)
    assert finished.stopped_because == "done"
    received = sorted(m.to for m in smtp_server.messages)
    dead_addresses = {r.email for r in dead[:3]}
    assert not dead_addresses & set(received), "what the dead sender's server took went out again"
    assert len(received) == len(set(received)) == 8 - 3
    assert {r.status for r in deliveries(settings)} == {"sent"}


def test_a_live_senders_journal_is_left_alone(sending):
    settings, issue_id = sending
    rows = queue.claim_batch(settings, "host:4:alive:0", 2, issue_id)
    with journal.Journal(settings, "host:4:alive:0") as mine:
        message = OutgoingMessage(
            sender="a@example.org",
            to=rows[0].email,
            subject="s",
            text="t",
            message_id="<x@example.org>",
            delivery_id=rows[0].id,
        )
        mine.accepted(message, SendResult("sent", provider_message_id="<x@example.org>"))
        assert journal.settle(settings) == 0  # its lock is held: the sender may still record it
        assert {r.status for r in deliveries(settings) if r.id in {rows[0].id, rows[1].id}} == {"sending"}
        assert mine.path.read_text().count("\n") == 2  # the header and one message
        mine.clear()  # the batch is recorded
        assert mine.path.read_text() == "# worker host:4:alive:0\n"
    assert not mine.path.exists()  # a sender that stops takes its journal with it


def test_a_send_leaves_no_journal_behind(sending, smtp_server):
    settings, issue_id = sending
    stats = dispatch.run_pool(settings, issue_id, wait=False)
    assert stats.sent == 8 and len(smtp_server.messages) == 8
    assert list(journal.directory(settings).glob("*")) == []


def test_senders_starting_while_others_settle_never_lose_their_journal(make_settings):
    """Journals opened in threads while another thread settles in a loop: a
    journal being made is never taken for a dead sender's."""
    settings = make_settings()
    stop, failures = threading.Event(), []

    def settler():
        while not stop.is_set():
            journal.settle(settings)

    def sender(n: int):
        try:
            for k in range(150):
                with journal.Journal(settings, f"host:9:t{n}:{k}") as mine:
                    assert mine.path.exists()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    background = threading.Thread(target=settler)
    background.start()
    try:
        assert race(*(lambda n=n: sender(n) for n in range(4))) == [None] * 4
    finally:
        stop.set()
        background.join()
    assert failures == []
    assert list(journal.directory(settings).glob("*")) == []


def test_a_send_goes_on_without_a_journal_where_the_folder_cannot_be_written(
    make_settings, smtp_server, tmp_path, caplog
):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings = make_settings(transport=smtp_server.dsn, instance_path=str(blocked / "instance"))
    clock.set(T0)
    make_issue(settings, 1)
    add_subscribers(settings, 3)
    issue = send.start_send(settings, 1)
    stats = dispatch.dispatch(settings, issue_id=issue.id, worker_id="host:5:ro:0", wait=False)
    assert stats.sent == 3 and len(smtp_server.messages) == 3
    assert "no wire journal" in caplog.text
