"""A real sending process (`newsletter issue send`) killed with SIGKILL in the
middle of a send, then started again: nobody is missed, and nobody gets it
twice — but for, at most, the last message of each SMTP session at the kill,
whose server reply the dead sender may not have read (RFC 1047's window; the
wire journal, ``delivery.journal``, closes everything wider). Without the
journal, every message of the batches in flight went out again (156 of 200)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.db import init_engine, session_scope
from newsletter.models import Delivery
from tests.delivery_fixtures import add_subscribers, command_env, issue_row, make_issue

ROOT = Path(__file__).resolve().parent.parent
READERS = 3000


def sender_env(settings) -> dict:
    return command_env(settings, NEWSLETTER_SEND_CONCURRENCY="4", NEWSLETTER_SEND_LEASE_SECONDS="3")


def command():
    return [sys.executable, "-m", "newsletter", "issue", "send", "1", "--yes"]


@pytest.mark.slow
def test_sigkill_mid_send_then_restart_misses_nobody(make_settings, smtp_server):
    smtp_server.respond = lambda rcpt: time.sleep(0.002)  # a real server takes a moment per message
    settings = make_settings(transport=smtp_server.dsn)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, READERS)
    env = sender_env(settings)

    first = subprocess.Popen(command(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(smtp_server.messages) < READERS // 4:
        assert first.poll() is None, first.stdout.read().decode()
        assert time.monotonic() < deadline, "the sender did not get going"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(0.3)  # let the SMTP server finish what was on the wire

    received_at_kill = len(smtp_server.messages)
    on_the_wire = smtp_server.last_per_session()
    with session_scope() as session:
        rows = session.execute(select(Delivery.email, Delivery.status)).all()
    in_flight = {email for email, status in rows if status == "sending"}
    recorded = Counter(status for _, status in rows)
    assert 0 < received_at_kill < READERS, "the kill happened mid-send"
    assert issue_row(settings, 1).status == "sending"

    second = subprocess.run(command(), cwd=ROOT, env=env, capture_output=True, timeout=300)
    output = (second.stdout + second.stderr).decode()
    assert second.returncode == 0, output

    per_reader = Counter(m.to for m in smtp_server.messages)
    everyone = {f"reader{i}@example.org" for i in range(READERS)}
    assert set(per_reader) == everyone, f"missed: {sorted(everyone - set(per_reader))[:5]}"
    duplicates = {address: n for address, n in per_reader.items() if n > 1}
    print(
        f"\ncrash test: {received_at_kill} received before SIGKILL; rows then {dict(recorded)}; "
        f"{len(in_flight)} in flight; {sum(n - 1 for n in duplicates.values())} duplicates after restart"
    )
    assert max(per_reader.values()) <= 2
    status_at_kill = dict(rows)
    assert set(duplicates) <= on_the_wire, (
        "a duplicate can only be the last message of a session at the kill: "
        f"{len(duplicates)} duplicates, rows at the kill {Counter(status_at_kill.get(a) for a in duplicates)}"
    )
    for address in duplicates:  # a resend is the same message: mailbox providers show it once
        assert len({m.message["Message-ID"] for m in smtp_server.to(address)}) == 1
    assert issue_row(settings, 1).status == "sent"
    assert issue_row(settings, 1).sent_count == READERS
