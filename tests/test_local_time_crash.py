"""Local-time delivery with real processes: two `newsletter scheduler`
processes send the waves of one issue (Sunday 08:00 Europe/Berlin, the
morning of the spring DST change) to readers in Pacific/Kiritimati,
Asia/Kathmandu, Europe/Berlin, America/St_Johns and Pacific/Pago_Pago.

The sending process is killed with SIGKILL in the middle of Kathmandu's
wave; the other takes over, a restarted one stands by, and the holder is
killed again between two waves. Every reader gets the issue at 08:00 their
own time (the SMTP server's clock), nobody is missed, and nobody gets it
twice — but for, at most, the last message of each SMTP session at the
mid-wave kill, whose server reply the dead process may not have read (RFC
1047's window; the wire journal, ``delivery.journal``, records everything
the server had answered), and a resend carries the same Message-ID. Their clock is the test-only
NEWSLETTER_TEST_CLOCK_FILE, shared with this process.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from newsletter import clock, db
from newsletter.db import session_scope
from newsletter.issues.service import schedule_issue
from newsletter.models import Delivery, Issue, Subscriber
from newsletter.scheduling.testclock import ENV_VAR, FileOffsetClock, write_offset
from tests.conftest import SECRET
from tests.content_fixtures import add_articles, article, make_sections
from tests.delivery_fixtures import add_subscribers, make_issue
from tests.test_local_time_delivery import FIRST, MOMENTS, WALL
from tests.test_scheduler_e2e import Proc, holder_pid, wait_until

pytestmark = pytest.mark.slow

PER_ZONE = 40
LOCK_SECONDS = 4
ORDER = sorted(MOMENTS, key=MOMENTS.get)


def prefix(zone: str) -> str:
    return zone.split("/")[1].lower()


def zone_of(address: str) -> str:
    return next(zone for zone in MOMENTS if address.startswith(prefix(zone)))


def arrived(smtp_server, zone: str) -> list:
    return [m for m in list(smtp_server.messages) if m.to.startswith(prefix(zone))]


def recorded(zone: str) -> int:
    """Rows of the zone the senders have recorded as sent."""
    with session_scope() as session:
        return len(
            session.scalars(
                select(Delivery.id).where(Delivery.timezone == zone, Delivery.status == "sent")
            ).all()
        )


def issue() -> Issue:
    with session_scope() as session:
        return session.scalars(select(Issue)).one()


def local_time_world(make_settings, database_url, smtp_server, tmp_path, zones) -> dict:
    """Readers in ``zones`` (PER_ZONE each), the week's articles, the test
    clock two hours before the first zone's 08:00, and the environment of a
    `newsletter scheduler` in local-time mode on that clock."""
    smtp_server.respond = lambda rcpt: time.sleep(0.01)  # a real server takes a moment per message
    settings = make_settings(transport=smtp_server.dsn)
    db.init_engine(database_url)
    clock.set(FIRST - timedelta(days=3))
    make_sections()
    add_articles(settings, [article(n, "ai-agents", at=FIRST - timedelta(days=2, hours=n)) for n in range(3)])
    for zone in zones:
        ids = add_subscribers(settings, PER_ZONE, prefix=prefix(zone))
        with session_scope() as session:
            session.execute(update(Subscriber).where(Subscriber.id.in_(ids)).values(timezone=zone))
    clock_file = tmp_path / "clock"
    write_offset(clock_file, FIRST - timedelta(hours=2))
    clock.reset()
    clock.set_source(FileOffsetClock(str(clock_file)))  # the SMTP server's clock is theirs
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "testing",
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": "http://localhost",
        "NEWSLETTER_MAIL_FROM": "GET THE SIGNAL <signal@example.org>",
        "NEWSLETTER_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTER_TRANSPORT": smtp_server.dsn,
        "NEWSLETTER_SCHEDULE": "0 8 * * sun",
        "NEWSLETTER_TIMEZONE": "Europe/Berlin",
        "NEWSLETTER_LOCAL_TIME_DELIVERY": "true",
        "NEWSLETTER_REVIEW_HOURS": "0",
        "NEWSLETTER_AUTO_SEND": "true",
        "NEWSLETTER_SEND_CONCURRENCY": "2",
        "NEWSLETTER_SEND_LEASE_SECONDS": "3",
        "NEWSLETTER_SEND_WAVE_RECHECK_SECONDS": "0.3",
        "NEWSLETTER_SCHEDULER_TICK_SECONDS": "0.5",
        "NEWSLETTER_SCHEDULER_LOCK_SECONDS": str(LOCK_SECONDS),
        ENV_VAR: str(clock_file),
    }
    env.pop("NEWSLETTER_TEST_DATABASE_URL", None)
    return env


def test_killed_mid_wave_and_between_waves_every_reader_once_at_eight_local(
    make_settings, database_url, smtp_server, tmp_path
):
    env = local_time_world(make_settings, database_url, smtp_server, tmp_path, MOMENTS)
    clock_file = tmp_path / "clock"
    procs = [Proc("a", env, tmp_path), Proc("b", env, tmp_path)]
    try:
        wait_until(
            lambda: all("started (" in p.path.read_text(errors="replace") for p in procs),
            90,
            "both up",
            procs,
        )
        wait_until(holder_pid, 30, "a lock holder", procs)

        # Kiritimati's 08:00: the send starts, its wave goes out, nobody else's.
        write_offset(clock_file, FIRST - timedelta(seconds=1))
        wait_until(lambda: len(arrived(smtp_server, ORDER[0])) == PER_ZONE, 60, "Kiritimati's wave", procs)
        assert len(smtp_server.messages) == PER_ZONE
        assert issue().status == "sending"

        # Kathmandu's 08:00: SIGKILL the sending process in the middle of the wave.
        write_offset(clock_file, MOMENTS[ORDER[1]] - timedelta(seconds=1))
        wait_until(
            lambda: len(arrived(smtp_server, ORDER[1])) >= PER_ZONE // 4, 60, "Kathmandu's wave", procs
        )
        victim = next(p for p in procs if p.pid == holder_pid())
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        time.sleep(0.3)  # what was on the wire reaches the server
        at_kill = len(arrived(smtp_server, ORDER[1]))
        on_the_wire = smtp_server.last_per_session()
        with session_scope() as session:
            in_flight = set(session.scalars(select(Delivery.email).where(Delivery.status == "sending")))
        assert 0 < at_kill < PER_ZONE, "the kill happened mid-wave"
        procs.append(Proc("c", env, tmp_path))  # restarted
        wait_until(lambda: recorded(ORDER[1]) == PER_ZONE, 90, "the rest of Kathmandu", procs)
        holder = next(p for p in procs if p.pid == holder_pid())  # the standby, or the restarted one
        assert holder is not victim

        # Berlin's 08:00 (CEST: 06:00 UTC), then the holder is killed between two waves.
        write_offset(clock_file, MOMENTS[ORDER[2]] - timedelta(seconds=1))
        wait_until(lambda: recorded(ORDER[2]) == PER_ZONE, 60, "Berlin's wave", procs)
        holder.popen.send_signal(signal.SIGKILL)  # nothing on the wire: every row is recorded
        holder.popen.wait(10)
        last = next(p for p in procs if p not in (victim, holder))
        wait_until(
            lambda: holder_pid() == last.pid, LOCK_SECONDS * 3 + 20, "the last one to take over", procs
        )

        for zone in ORDER[3:]:
            write_offset(clock_file, MOMENTS[zone] - timedelta(seconds=1))
            wait_until(lambda z=zone: recorded(z) == PER_ZONE, 90, f"{zone}'s wave", procs)
        wait_until(lambda: issue().status == "sent", 30, "the send to finish", procs)
        time.sleep(1)

        per_reader = Counter(m.to for m in smtp_server.messages)
        everyone = {f"{prefix(z)}{n}@example.org" for z in MOMENTS for n in range(PER_ZONE)}
        assert set(per_reader) == everyone, f"missed: {sorted(everyone - set(per_reader))[:5]}"
        twice = {address for address, n in per_reader.items() if n > 1}
        assert max(per_reader.values()) <= 2
        assert twice <= on_the_wire & in_flight, (
            "a duplicate can only be a session's last message at the kill"
        )
        for address in twice:  # a resend is the same message: mailbox providers show it once
            assert len({m.message["Message-ID"] for m in smtp_server.to(address)}) == 1
        assert {zone_of(a) for a in twice} <= {ORDER[1]}  # the between-waves kill cost nobody anything
        for m in smtp_server.messages:
            moment = MOMENTS[zone_of(m.to)]
            local = m.received_at.astimezone(ZoneInfo(zone_of(m.to)))
            assert local.date() == WALL.date() and local.hour == 8, (m.to, local)
            assert timedelta(0) <= m.received_at - moment < timedelta(minutes=2), (m.to, m.received_at)
        assert (issue().status, issue().sent_count) == ("sent", len(everyone))
        print(
            f"\nlocal-time crash test ({db.get_engine().dialect.name}): {at_kill} of Kathmandu's {PER_ZONE} "
            f"received at the SIGKILL, {len(in_flight)} rows in flight, {len(twice)} received twice; "
            "the between-waves kill: none"
        )
    finally:
        clock.set_source(None)
        for p in procs:
            p.stop()


def test_the_scheduler_keeps_ticking_while_a_local_time_send_waits_for_its_next_wave(
    make_settings, database_url, smtp_server, tmp_path
):
    """The send runs in the scheduler's sender thread, not in its tick: while
    issue 1 waits a day for Pago Pago's wave, an issue scheduled for a chosen
    time in between goes out on time, to everyone at once."""
    zones = ("Pacific/Kiritimati", "Pacific/Pago_Pago")
    env = local_time_world(make_settings, database_url, smtp_server, tmp_path, zones)
    clock_file = tmp_path / "clock"
    proc = Proc("a", env, tmp_path)

    def received(number: int) -> list:
        return [
            m for m in list(smtp_server.messages) if m.message["Subject"].startswith(f"Issue {number:03d}")
        ]

    try:
        wait_until(lambda: "started (" in proc.path.read_text(errors="replace"), 90, "up", [proc])
        write_offset(clock_file, FIRST - timedelta(seconds=1))
        wait_until(lambda: len(received(1)) == PER_ZONE, 60, "Kiritimati's wave", [proc])

        timed = FIRST + timedelta(hours=3)  # Pago Pago's 08:00 is 25 hours after Kiritimati's
        make_issue(make_settings(transport=smtp_server.dsn), 2)
        schedule_issue(2, timed)
        write_offset(clock_file, timed - timedelta(seconds=1))
        wait_until(lambda: len(received(2)) == 2 * PER_ZONE, 60, "the timed issue, mid-waves", [proc])
        assert len(received(1)) == PER_ZONE  # Pago Pago's wave is still to come

        write_offset(clock_file, MOMENTS["Pacific/Pago_Pago"] - timedelta(seconds=1))
        wait_until(lambda: len(received(1)) == 2 * PER_ZONE, 60, "Pago Pago's wave", [proc])
        for number in (1, 2):
            assert sorted(Counter(m.to for m in received(number)).values()) == [1] * 2 * PER_ZONE
        for m in received(1):
            local = m.received_at.astimezone(ZoneInfo(zone_of(m.to)))
            assert (local.date(), local.hour) == (WALL.date(), 8), (m.to, local)
    finally:
        clock.set_source(None)
        proc.stop()
