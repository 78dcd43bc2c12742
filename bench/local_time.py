"""Local-time delivery on a million readers: what the waves cost the fan-out
and the claims, against today's send where every row is due at once.

    .venv/bin/python bench/local_time.py [--readers 1000000] [--claims 200]
                                         [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The readers are spread over 20 zones (from Pacific/Kiritimati, UTC+14, to
Pacific/Pago_Pago, UTC−11, with 30- and 45-minute offsets) plus readers
without a zone. Three sends of the same million rows are measured (the fan-out of today's
send twice: into an empty table, and after the waves' send, as the waves'
own fan-out is):

* today: ``fan_out`` without waves, every row due now; claims of 500;
* local time: ``fan_out`` with one wave per zone (one INSERT … SELECT each),
  the clock in the middle of the waves; claims of 500 until the due rows are
  taken, then claims with nothing due (what an idle sender pays per look);
* the design not taken: a separate ``not_before`` column as an extra
  condition (``next_attempt_at <= now AND not_before <= now``) that no index
  orders — each claim then walks past the rows of waves still to come.

Each claim is the real statement (``queue.claim_batch``), timed one by one;
the figures are the median and the 95th percentile. The query plans of the
claim's inner SELECT are printed too. The load average is printed with the
figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from send_common import add_readers, make_issue, settings_for, throwaway_database

ZONES = [
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/St_Johns",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
    "",  # no zone: the newsletter's (Europe/Berlin)
]
SLOT = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # Sunday 08:00 CEST, the spring DST change
BATCH = 500


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def moved_clock() -> Iterator[None]:
    """The bench sets ``newsletter.clock``; it is the wall clock again at the end."""
    from newsletter import clock

    try:
        yield
    finally:
        clock.reset()


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms ({len(values)} claims)"


def timed_claims(settings, issue_id: int, count: int, claim) -> tuple[list[float], int]:
    took, rows = [], 0
    for n in range(count):
        started = time.perf_counter()
        got = claim(settings, f"bench:{n}", BATCH, issue_id)
        took.append(time.perf_counter() - started)
        rows += len(got)
    return took, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from sqlalchemy import bindparam, text

    from newsletter import clock
    from newsletter.db import get_engine, is_sqlite, session_scope
    from newsletter.delivery import fanout, localtime, queue
    from newsletter.models import Delivery

    with throwaway_database(args.database_url) as (url, work), moved_clock():
        settings = settings_for(url, work, timezone="Europe/Berlin", local_time_delivery=True)
        clock.set(SLOT - timedelta(hours=13))
        today_id, local_id, other_id, again_id = (make_issue(settings, n) for n in (1, 2, 3, 4))
        created = add_readers(args.readers)
        with session_scope() as session:  # claims take rows of issues that are sending
            session.execute(text("UPDATE issue SET status = 'sending'"))
        cases = " ".join(f"WHEN {n} THEN '{zone}'" for n, zone in enumerate(ZONES))
        with session_scope() as session:
            session.execute(text(f"UPDATE subscriber SET timezone = CASE id % {len(ZONES)} {cases} END"))
            if not is_sqlite():
                session.execute(text("ANALYZE subscriber"))
        backend = "SQLite" if is_sqlite() else "PostgreSQL"
        print(
            f"database             {backend}; {args.readers} readers in {len(ZONES)} zones ({created:.1f} s)"
        )

        # Fan-out: today's one statement, and one per zone.
        started = time.perf_counter()
        with session_scope() as session:
            rows_today = fanout.fan_out(session, today_id)
        fan_today = time.perf_counter() - started
        started = time.perf_counter()
        with session_scope() as session:
            waves = localtime.waves(settings, SLOT, localtime.reader_zones(session))
            rows_local = fanout.fan_out(session, local_id, waves)
        fan_local = time.perf_counter() - started
        started = time.perf_counter()
        with session_scope() as session:
            rows_again = fanout.fan_out(session, again_id)
        fan_again = time.perf_counter() - started
        print(
            f"fan-out, today       {rows_today} rows in {fan_today:.2f} s (an empty table)      load {load()}"
        )
        print(f"  … next issue       {rows_again} rows in {fan_again:.2f} s (another issue's rows present)")
        print(
            f"fan-out, waves       {rows_local} rows in {fan_local:.2f} s, {len(waves)} zones "
            f"(first {waves[0].due:%a %H:%M}, last {waves[-1].due:%a %H:%M} UTC)      load {load()}"
        )
        if not is_sqlite():
            with session_scope() as session:
                session.execute(text("ANALYZE delivery"))

        # Claims: today (everything due), the waves (the clock mid-way), nothing due.
        middle = waves[len(waves) // 2].due
        due_now = sum(1 for w in waves if w.due <= middle)
        clock.set(middle)
        took_today, got_today = timed_claims(settings, today_id, args.claims, queue.claim_batch)
        print(f"claims, today        {ms(took_today)}; {got_today} rows      load {load()}")
        took_local, got_local = timed_claims(settings, local_id, args.claims, queue.claim_batch)
        print(
            f"claims, waves        {ms(took_local)}; {got_local} rows "
            f"({due_now} of {len(waves)} waves due)      load {load()}"
        )
        clock.set(waves[0].due - timedelta(minutes=1))
        took_idle, got_idle = timed_claims(settings, local_id, args.claims, queue.claim_batch)
        print(f"claims, none due     {ms(took_idle)}; {got_idle} rows      load {load()}")

        # The design not taken: "not before" as its own column and condition.
        nat = Delivery.__table__.c.next_attempt_at.type
        with session_scope() as session:
            session.execute(text("ALTER TABLE delivery ADD COLUMN not_before TIMESTAMP"))
            session.execute(
                text(
                    "INSERT INTO delivery (issue_id, subscriber_id, email, topics, status, attempts, "
                    "next_attempt_at, not_before, last_error, updated_at, timezone) "
                    "SELECT :other, subscriber_id, email, topics, 'pending', 0, :fanned, next_attempt_at, '', "
                    "updated_at, timezone FROM delivery WHERE issue_id = :local"
                ).bindparams(bindparam("fanned", type_=nat)),
                {"other": other_id, "local": local_id, "fanned": SLOT - timedelta(hours=13)},
            )
            if not is_sqlite():
                session.execute(text("ANALYZE delivery"))
        lock = "" if is_sqlite() else " FOR UPDATE SKIP LOCKED"
        inner = (
            "SELECT id FROM delivery WHERE issue_id = :issue AND status = 'pending' "
            "AND next_attempt_at <= :now AND not_before <= :now ORDER BY next_attempt_at LIMIT :size"
        )
        separate = text(
            f"UPDATE delivery SET status = 'sending', lease_owner = :worker, attempts = attempts + 1 "
            f"WHERE id IN ({inner}{lock}) RETURNING id"
        ).bindparams(bindparam("now", type_=nat))

        def claim_separate(settings, worker, size, issue_id):
            with get_engine().begin() as connection:
                return connection.execute(
                    separate, {"issue": issue_id, "now": clock.now(), "size": size, "worker": worker}
                ).all()

        clock.set(middle)
        took_sep, got_sep = timed_claims(settings, other_id, args.claims, claim_separate)
        print(
            f"claims, not_before   {ms(took_sep)}; {got_sep} rows (separate column, no index)      load {load()}"
        )
        clock.set(waves[0].due - timedelta(minutes=1))
        took_sep, got_sep = timed_claims(settings, other_id, max(5, args.claims // 20), claim_separate)
        print(
            f"  … none due         {ms(took_sep)}; {got_sep} rows (each look walks the rows to come)      load {load()}"
        )

        # The plans of the claim's inner SELECT (today's statement, unchanged).
        due = (
            "SELECT id FROM delivery WHERE issue_id = {issue} AND status = 'pending' "
            "AND next_attempt_at <= {now} ORDER BY next_attempt_at LIMIT 500"
        )
        stamp = middle.strftime("%Y-%m-%d %H:%M:%S.%f") if is_sqlite() else middle.isoformat()
        explain = "EXPLAIN QUERY PLAN " if is_sqlite() else "EXPLAIN "
        with get_engine().connect() as connection:
            for label, issue_id, sql in (
                ("claim plan", local_id, due),
                ("not_before plan", other_id, due.replace("ORDER BY", "AND not_before <= {now} ORDER BY")),
            ):
                plan = connection.execute(text(explain + sql.format(issue=issue_id, now=f"'{stamp}'"))).all()
                print(f"{label:<20} " + " | ".join(str(row[-1]) for row in plan))


if __name__ == "__main__":
    main()
