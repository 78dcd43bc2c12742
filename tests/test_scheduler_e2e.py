"""End to end: two real `newsletter scheduler` processes on the test database
(SQLite file or PostgreSQL), mailing a real SMTP server (aiosmtpd).

Their clock is moved with the test-only NEWSLETTER_TEST_CLOCK_FILE (wall
clock + an offset the test rewrites), so a weekly Monday 08:00 London slot
comes within seconds. Shown: one process holds the lock and acts, the other
stands by; exactly one issue is assembled and sent and every reader gets it
once; after the holder is killed (SIGKILL) the other takes over and runs the
next week's slot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter import clock, db
from newsletter.db import session_scope
from newsletter.models import Issue
from newsletter.scheduling import jobs, runs
from newsletter.scheduling.lock import lock_state
from newsletter.scheduling.testclock import ENV_VAR, write_offset
from tests.conftest import SECRET
from tests.content_fixtures import add_articles, article, make_sections
from tests.delivery_fixtures import add_subscribers

pytestmark = pytest.mark.slow

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
EDITOR = "editor@example.org"
READERS = 12
SLOT1 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # Monday 08:00 GMT
SLOT2 = SLOT1 + timedelta(days=7)
REVIEW_HOURS = 1
LOCK_SECONDS = 4
# The clock is set this far before each moment (review, slot): the processes pass it on
# their own clock and ticks, as the local-time tests do (it was 2 s: 4 s of waiting).
LEAD = timedelta(seconds=1)


def wait_until(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(p.log() for p in procs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


class Proc:
    def __init__(self, name: str, env: dict, tmp_path: Path):
        self.name = name
        self.path = tmp_path / f"{name}.log"
        self.out = self.path.open("wb")
        self.popen = subprocess.Popen(
            [NEWSLETTER, "scheduler"], env=env, cwd=tmp_path, stdout=self.out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return f"--- {self.name} (pid {self.pid}) ---\n" + self.path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.out.close()


def holder_pid() -> int | None:
    state = lock_state(db.get_engine())
    if not state.get("held") or not state.get("holder"):
        return None
    return int(state["holder"].split(":")[1])


def issues() -> list[Issue]:
    with session_scope() as session:
        return list(session.scalars(select(Issue).order_by(Issue.number)))


def test_two_scheduler_processes_send_each_slot_once_and_survive_losing_the_holder(
    make_settings, database_url, smtp_server, tmp_path
):
    settings = make_settings(transport=smtp_server.dsn)
    db.init_engine(database_url)
    clock.set(SLOT1 - timedelta(days=1))
    make_sections()
    add_articles(settings, [article(n, "ai-agents", at=SLOT1 - timedelta(days=2, hours=n)) for n in range(3)])
    add_subscribers(settings, READERS)

    clock_file = tmp_path / "clock"
    write_offset(clock_file, SLOT1 - timedelta(hours=3))  # a quiet Monday morning
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "testing",
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": "http://localhost",
        "NEWSLETTER_MAIL_FROM": "GET THE SIGNAL <signal@example.org>",
        "NEWSLETTER_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTER_TRANSPORT": smtp_server.dsn,
        "NEWSLETTER_SCHEDULE": "0 8 * * mon",
        "NEWSLETTER_TIMEZONE": "Europe/London",
        "NEWSLETTER_REVIEW_HOURS": str(REVIEW_HOURS),
        "NEWSLETTER_AUTO_SEND": "true",
        "NEWSLETTER_EDITOR_EMAILS": EDITOR,
        "NEWSLETTER_SEND_CONCURRENCY": "2",
        "NEWSLETTER_SCHEDULER_TICK_SECONDS": "0.5",
        "NEWSLETTER_SCHEDULER_LOCK_SECONDS": str(LOCK_SECONDS),
        ENV_VAR: str(clock_file),
    }
    env.pop("NEWSLETTER_TEST_DATABASE_URL", None)
    procs = [Proc("a", env, tmp_path), Proc("b", env, tmp_path)]
    try:
        # Both up: one holds the lock, the other stands by.
        wait_until(
            lambda: all("started (" in p.path.read_text(errors="replace") for p in procs),
            90,
            "both schedulers to start",
            procs,
        )
        holder = wait_until(holder_pid, 30, "a lock holder", procs)
        assert holder in {p.pid for p in procs}
        standby = next(p for p in procs if p.pid != holder)
        assert "standing by" in standby.path.read_text() or "lock acquired" not in standby.path.read_text()

        # Review time: the draft is assembled once and the editor gets its preview link.
        write_offset(clock_file, SLOT1 - timedelta(hours=REVIEW_HOURS) - LEAD)
        [review] = wait_until(lambda: smtp_server.to(EDITOR), 30, "the review mail", procs)
        assert "/editor/issues/1" in review.text
        [draft] = issues()
        assert draft.slot_at == SLOT1

        # The slot: sent once to every reader, however often both processes tick.
        write_offset(clock_file, SLOT1 - LEAD)
        wait_until(lambda: len(smtp_server.messages) >= 1 + READERS, 60, "the issue to every reader", procs)
        wait_until(
            lambda: runs.get(jobs.SEND, SLOT1) and runs.get(jobs.SEND, SLOT1).state == "done",
            30,
            "the send job to finish",
            procs,
        )
        time.sleep(3)  # a few more ticks of both processes
        readers = [m for m in smtp_server.messages if m.to != EDITOR]
        assert Counter(m.to for m in readers) == {f"reader{n}@example.org": 1 for n in range(READERS)}
        assert all(m.message["Subject"].startswith("Issue 001") for m in readers)
        assert [(i.number, i.status, i.sent_count) for i in issues()] == [(1, "sent", READERS)]
        assert "scheduler: send" not in standby.path.read_text()  # the standby never acted
        assert holder_pid() == holder

        # The holder dies without a word; the standby takes over and runs next week's slot.
        victim = next(p for p in procs if p.pid == holder)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        killed_at = time.monotonic()
        clock.set(SLOT2 - timedelta(days=2))
        add_articles(
            settings, [article(10 + n, "data", at=SLOT2 - timedelta(days=3, hours=n)) for n in range(2)]
        )
        wait_until(
            lambda: holder_pid() == standby.pid, LOCK_SECONDS * 3 + 10, "the standby to take the lock", procs
        )
        took_over = time.monotonic() - killed_at
        assert took_over <= LOCK_SECONDS * 3 + 10

        write_offset(clock_file, SLOT2 - timedelta(hours=REVIEW_HOURS) - LEAD)
        wait_until(lambda: len(smtp_server.to(EDITOR)) >= 2, 30, "the second review mail", procs)
        write_offset(clock_file, SLOT2 - LEAD)
        wait_until(lambda: len(smtp_server.messages) >= 2 + 2 * READERS, 60, "issue 2 to every reader", procs)
        wait_until(
            lambda: runs.get(jobs.SEND, SLOT2) and runs.get(jobs.SEND, SLOT2).state == "done",
            30,
            "the second send job to finish",
            procs,
        )
        time.sleep(2)
        readers = [m for m in smtp_server.messages if m.to != EDITOR]
        assert Counter(m.to for m in readers) == {f"reader{n}@example.org": 2 for n in range(READERS)}
        second = [m for m in readers if m.message["Subject"].startswith("Issue 002")]
        assert len(second) == READERS
        assert [(i.number, i.status, i.slot_at) for i in issues()] == [(1, "sent", SLOT1), (2, "sent", SLOT2)]
        assert "scheduler: send" in standby.path.read_text()
        print(f"takeover after SIGKILL: {took_over:.1f} s ({db.get_engine().dialect.name})")
    finally:
        for p in procs:
            p.stop()
