"""Fan-out for a million readers: the one INSERT … SELECT that creates a
delivery row per active, unsuppressed reader.

    .venv/bin/python bench/fanout.py [--readers 1000000]
                                     [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Targets: under 10 s on PostgreSQL, under 20 s on SQLite. The readers are
created first (one INSERT … SELECT from generate_series / a recursive CTE)
and 1% of them suppressed, so the NOT EXISTS against the suppression list is
really evaluated. After the first issue (an empty delivery table) a second
issue is fanned out too: the usual case, where the unique
(subscriber_id, issue_id) index already holds a row per reader. A third
issue is then fanned out with ON CONFLICT DO NOTHING, as every fan-out was
before 2026-11-30, to show what an issue's first fan-out saves without it.
"""

from __future__ import annotations

import argparse
import time

from send_common import add_readers, make_issue, settings_for, throwaway_database


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from sqlalchemy import func, select, text

    from newsletter import clock
    from newsletter.db import is_sqlite, session_scope
    from newsletter.delivery import fanout
    from newsletter.models import Delivery

    with throwaway_database(args.database_url) as (url, work):
        settings = settings_for(url, work)
        issue_id = make_issue(settings, 1)
        second_id = make_issue(settings, 2)
        third_id = make_issue(settings, 3)
        created = add_readers(args.readers)
        with session_scope() as session:
            session.execute(
                text(
                    "INSERT INTO suppression (email_hash, reason, detail, created_at) "
                    "SELECT email_hash, 'hard_bounce', '', created_at FROM subscriber WHERE id % 100 = 0"
                )
            )
        started = time.perf_counter()
        with session_scope() as session:
            inserted = fanout.fan_out(session, issue_id)
        fan_out = time.perf_counter() - started
        with session_scope() as session:
            rows = session.execute(select(func.count()).select_from(Delivery)).scalar()
        started = time.perf_counter()
        with session_scope() as session:
            again = fanout.fan_out(session, issue_id)
        rerun = time.perf_counter() - started
        started = time.perf_counter()
        with session_scope() as session:
            second = fanout.fan_out(session, second_id)
        next_issue = time.perf_counter() - started
        # The same statement with ON CONFLICT DO NOTHING, as every fan-out was
        # before 2026-11-30: what leaving it out of an issue's first one saves.
        started = time.perf_counter()
        with session_scope() as session:
            fanout.hold_for_fan_out(session)
            now = clock.now()
            session.connection().execute(fanout._statement(third_id, now, now, again=True))
        with_on_conflict = time.perf_counter() - started
        backend = "SQLite" if is_sqlite() else "PostgreSQL"
        target = 20 if is_sqlite() else 10
        print(f"database            {backend}")
        print(f"readers created     {args.readers} in {created:.1f} s (1% suppressed)")
        print(
            f"fan-out             {inserted} rows in {fan_out:.2f} s  ({inserted / fan_out:,.0f} rows/s; target < {target} s)"
        )
        print(f"rows in delivery    {rows}")
        print(f"fan-out again       {again} new rows in {rerun:.2f} s (ON CONFLICT DO NOTHING)")
        print(
            f"next issue          {second} rows in {next_issue:.2f} s (with the first issue's rows present)"
        )
        print(
            f"the same with ON CONFLICT DO NOTHING  {with_on_conflict:.2f} s (a third issue, as before 2026-11-30)"
        )


if __name__ == "__main__":
    main()
