"""The engine's CPU by step: one process sends an issue into smtp-sink with
each step of a batch timed (wall clock and the thread's own CPU time), so the
next microsecond to save can be found.

    .venv/bin/python bench/send_phases.py [--readers 20000] [--concurrency 4]
                                          [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The steps are the real functions of ``delivery`` (claim, eligibility,
personalise, the message object, MIME, SMTP: a batch over a thread's
connections, recording),
wrapped here with a timer; nothing else changes. Wall time is summed over
the sending threads, so it includes waiting for the server and for the GIL;
the CPU column does not. Figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import functools
import resource
import threading
import time
from collections import Counter

from send_common import SmtpSink, add_readers, make_issue, settings_for, throwaway_database

WALL: Counter = Counter()
CPU: Counter = Counter()
CALLS: Counter = Counter()
LOCK = threading.Lock()


def timed(owner, name: str, label: str) -> None:
    """Replace ``owner.name`` with a copy that adds its wall and thread CPU time to ``label``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            with LOCK:
                WALL[label] += time.perf_counter() - wall
                CPU[label] += time.thread_time() - cpu
                CALLS[label] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from newsletter.delivery import batch, dispatch, outcomes, queue
    from newsletter.delivery.deliver import deliver
    from newsletter.delivery.message import OutgoingMessage
    from newsletter.delivery.transports.smtp import SmtpTransport

    with throwaway_database(args.database_url) as (url, work), SmtpSink() as sink:
        add_readers(args.readers)
        settings = settings_for(
            url, work, transport=sink.dsn, send_concurrency=args.concurrency, send_processes=1
        )
        make_issue(settings, 1)
        timed(queue, "claim_batch", "claim")
        timed(batch, "eligibility", "eligibility")
        timed(batch, "personalise", "personalise")
        timed(batch, "build_issue_message", "message object")
        timed(OutgoingMessage, "built", "MIME")
        timed(SmtpTransport, "_run_lanes", "SMTP (a batch)")
        timed(outcomes, "record", "record")
        timed(batch, "process_batch", "whole batch")
        dispatch.process_batch = batch.process_batch
        before, sink_before = resource.getrusage(resource.RUSAGE_SELF), sink.cpu_seconds()
        started = time.perf_counter()
        counts = deliver(settings, 1, here=True)
        took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(
            f"{counts.sent} sent in {took:.2f} s ({counts.sent / took:,.0f} msg/s), one process, "
            f"{args.concurrency} connections; process CPU {cpu:.2f} s, smtp-sink {sink.cpu_seconds() - sink_before:.2f} s"
        )
        for label in WALL:
            print(
                f"{label:18} {CALLS[label]:6} calls  wall {WALL[label]:6.2f} s  CPU {CPU[label]:5.2f} s  "
                f"{CPU[label] / max(1, counts.sent) * 1e6:6.1f} µs a message"
            )


if __name__ == "__main__":
    main()
