"""The database's share of a send, step by step: a batch's claim, its
eligibility check and the recording of its outcomes, each run once a batch
over an issue fanned out to 20,000 readers, one thread, no SMTP. Prints, a
batch, the CPU the database server used (PostgreSQL's processes on this
machine; 0 for SQLite, whose work is the caller's own), the caller's CPU
and the wall clock. ``--batch`` defaults to the SMTP transport's batch
(``SmtpTransport.max_batch``, 200: two connections of 100; 100 in the ninth
session, 50 before).

    .venv/bin/python bench/send_db_steps.py [--readers 20000] [--batch 200]
                                            [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The steps are the real functions (``queue.claim_batch``, ``batch.eligibility``,
``outcomes.record``); figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import time

from send_common import add_readers, database_cpu_seconds, make_issue, settings_for, throwaway_database


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--batch", type=int, default=0, help="rows a batch (default: the SMTP transport's)")
    args = parser.parse_args()

    from newsletter.delivery import batch, outcomes, queue, send
    from newsletter.delivery.batch import DispatchStats
    from newsletter.delivery.transports.base import SendResult
    from newsletter.delivery.transports.smtp import SmtpTransport

    size = args.batch or SmtpTransport.max_batch
    batches = args.readers // size

    with throwaway_database(args.database_url) as (url, work):
        add_readers(args.readers)
        settings = settings_for(url, work, transport="outbox://", send_processes=1)
        make_issue(settings, 1)
        issue = send.start_send(settings, 1)
        claimed: list = []

        def measure(label: str, step) -> None:
            server, cpu, wall = database_cpu_seconds(), time.process_time(), time.perf_counter()
            for index in range(batches):
                step(index)
            server, cpu = database_cpu_seconds() - server, time.process_time() - cpu
            print(
                f"{label:12} server {server / batches * 1e3:5.2f} ms, this process {cpu / batches * 1e3:5.2f} ms, "
                f"wall {(time.perf_counter() - wall) / batches * 1e3:5.2f} ms a batch of {size}"
            )

        def record(index: int) -> None:
            rows = claimed[index]
            sent = [SendResult("sent", provider_message_id=f"<{row.id}@bench>") for row in rows]
            ids = {row.id: f"<{row.id}@bench>" for row in rows}
            outcomes.record(settings, "bench", rows, sent, ids, {}, DispatchStats())

        measure("claim", lambda index: claimed.append(queue.claim_batch(settings, "bench", size, issue.id)))
        measure("eligibility", lambda index: batch.eligibility(claimed[index]))
        measure("record", record)


if __name__ == "__main__":
    main()
