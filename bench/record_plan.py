"""What PostgreSQL does to claim and record a batch, with and without being
told to find the rows through an index (``queue.find_by_index``).

An issue fanned out to ``--readers`` readers on a fresh database, as a
send meets it: statistics taken before the fan-out (the bench's ANALYZE of
an empty delivery table), or with ``--analyze`` taken after it. Then, as a
send does, batch after batch: claim 200 rows (``queue.claim_batch``), record
them sent (``outcomes.record``). The first half of the batches run with the
planner left to itself, the second half as the code runs them; each line
prints, a batch, the server's CPU, this process's, the claim's and the
record's wall clock, and how many times the server read the whole delivery
table.

    .venv/bin/python bench/record_plan.py [--readers 20000] [--analyze]
                                          [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Figures in docs/performance.md ("The thirteenth session").
"""

from __future__ import annotations

import argparse
import time

from send_common import add_readers, database_cpu_seconds, make_issue, settings_for, throwaway_database

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TABLE_READS = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'delivery'"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--database-url", default=SERVER, help="a PostgreSQL server")
    parser.add_argument("--analyze", action="store_true", help="statistics taken after the fan-out")
    args = parser.parse_args()

    from sqlalchemy import text

    from newsletter.db import get_engine, session_scope
    from newsletter.delivery import outcomes, queue, send
    from newsletter.delivery.batch import DispatchStats
    from newsletter.delivery.transports.base import SendResult

    by_index = queue.FIND_BY_INDEX
    with throwaway_database(args.database_url) as (url, work):
        add_readers(args.readers)
        settings = settings_for(url, work, transport="outbox://", send_processes=1)
        make_issue(settings, 1)
        issue = send.start_send(settings, 1)
        if args.analyze:
            with session_scope() as session:
                session.execute(text("ANALYZE delivery"))

        def table_reads() -> int:
            """Whole reads of the delivery table so far. The connections are
            closed first: their servers report what they did as they exit, and
            their prepared statements' cached plans (made under the previous
            setting, which they would keep using) go with them."""
            get_engine().dispose()
            time.sleep(0.5)
            with session_scope() as session:
                return session.execute(text(TABLE_READS)).scalar_one()

        def run(label: str, batches: int) -> None:
            reads = table_reads()
            server, cpu = database_cpu_seconds(), time.process_time()
            claiming = recording = 0.0
            for _ in range(batches):
                started = time.perf_counter()
                rows = queue.claim_batch(settings, "bench", 200, issue.id)
                claimed = time.perf_counter()
                sent = [SendResult("sent", provider_message_id=f"<{row.id}@bench>") for row in rows]
                message_ids = {row.id: f"<{row.id}@bench>" for row in rows}
                outcomes.record(settings, "bench", rows, sent, message_ids, {}, DispatchStats())
                claiming, recording = claiming + claimed - started, recording + time.perf_counter() - claimed
            server, cpu = database_cpu_seconds() - server, time.process_time() - cpu
            print(
                f"{label:24} a batch of 200: server {server / batches * 1e3:5.2f} ms, "
                f"this process {cpu / batches * 1e3:5.2f} ms; claim {claiming / batches * 1e3:5.2f} ms, "
                f"record {recording / batches * 1e3:5.2f} ms; whole-table reads {table_reads() - reads}"
            )

        half = args.readers // 200 // 2
        queue.FIND_BY_INDEX = "SET LOCAL enable_seqscan = on"  # the planner's own choice
        run("the planner's own choice", half)
        queue.FIND_BY_INDEX = by_index
        run("by index (as the code is)", half)


if __name__ == "__main__":
    main()
