"""Send throughput into Postfix's smtp-sink on loopback, against
``smtp-source -d`` sending the same number of messages of the same size with
the same concurrency, in the same run.

    .venv/bin/python bench/send_smtp.py [--count 20000] [--concurrency 4] [--dkim] [--processes N]
                                         [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

``--processes`` (NEWSLETTER_SEND_PROCESSES) defaults to the number of CPUs,
as docs/operating.md advises for large sends; the concurrency (SMTP sessions) is
split over them, so the mail server sees as many sessions as smtp-source
opens. ``--processes 1`` measures a single sending process.

Our figure is the whole dispatch phase of `issue send`: claiming leased
batches, checking each reader is still active and unsuppressed,
personalising the frozen render, building MIME (and signing with DKIM),
SMTP over the connection pool, and recording every outcome in the database.
Targets: ratio ≥ 0.5 without DKIM, ≥ 0.35 with it.
"""

from __future__ import annotations

import argparse
import os
import time

from send_common import (
    SmtpSink,
    add_readers,
    dkim_settings,
    make_issue,
    settings_for,
    smtp_source_rate,
    throwaway_database,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dkim", action="store_true")
    parser.add_argument(
        "--processes",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="NEWSLETTER_SEND_PROCESSES (default: the number of CPUs; the concurrency is split over them)",
    )
    parser.add_argument(
        "--database-url", default="", help="a PostgreSQL server URL (a fresh database is created)"
    )
    args = parser.parse_args()

    from newsletter.delivery import send
    from newsletter.delivery.deliver import run_senders

    with throwaway_database(args.database_url) as (url, work), SmtpSink() as sink:
        dkim = dkim_settings(work) if args.dkim else {}
        settings = settings_for(
            url,
            work,
            transport=sink.dsn,
            send_concurrency=args.concurrency,
            send_processes=args.processes,
            **dkim,
        )
        make_issue(settings, 1)
        add_readers(args.count)
        started = time.perf_counter()
        issue = send.start_send(settings, 1)
        frozen = time.perf_counter()
        cpu_before, sink_before = _cpu_seconds(), sink.cpu_seconds()
        stats = run_senders(settings, issue.id)
        send.finish_issue(issue.id)
        ours = stats.sent / (time.perf_counter() - frozen)
        cpu = (_cpu_seconds() - cpu_before) / max(1, stats.sent) * 1000
        sink_cpu = (sink.cpu_seconds() - sink_before) / max(1, stats.sent) * 1000
        size = _average_size(settings, issue.id)
        theirs = smtp_source_rate(sink.port, args.count, size, args.concurrency)
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(
            f"messages            {args.count} x {size} bytes, concurrency {args.concurrency}, "
            f"processes {args.processes}, DKIM {'on' if args.dkim else 'off'}, {backend}"
        )
        print(f"freeze + fan-out    {frozen - started:8.2f} s")
        print(f"newsletter send     {ours:8.0f} msg/s  ({stats.sent} sent, {stats.failed} failed)")
        print(f"smtp-source -d      {theirs:8.0f} msg/s")
        print(f"sender CPU          {cpu:8.3f} ms a message (user + system, all sender processes)")
        print(f"smtp-sink CPU       {sink_cpu:8.3f} ms a message (during our send; {os.cpu_count()} CPUs)")
        target = 0.35 if args.dkim else 0.5
        print(f"ratio               {ours / theirs:8.2f}  (target >= {target})")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (sender processes):
    a figure that does not depend on how busy the machine is."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _average_size(settings, issue_id: int) -> int:
    """Size of a real message of this send (the body smtp-source must match)."""
    from sqlalchemy import select

    from newsletter.db import session_scope
    from newsletter.delivery.batch import Renders
    from newsletter.delivery.messages import build_issue_message
    from newsletter.delivery.queue import Claimed
    from newsletter.models import Delivery, Subscriber
    from newsletter.rendering.personalise import personalise

    with session_scope() as session:
        row = session.scalars(select(Delivery).where(Delivery.issue_id == issue_id).limit(1)).first()
        if row is None:  # a frozen issue not sent: the first reader, as its row would say
            row = session.scalars(select(Subscriber).order_by(Subscriber.id).limit(1)).one()
            claimed = Claimed(1, issue_id, row.id, row.email, row.topics, 1, "Reader")
        else:
            claimed = Claimed(row.id, row.issue_id, row.subscriber_id, row.email, row.topics, 1, "Reader")
    renders = Renders(settings)
    issue, _ = renders.issue(issue_id)
    personal = personalise(
        renders.render(issue_id, ""), settings, subscriber_id=claimed.subscriber_id, name="Reader"
    )
    return len(build_issue_message(settings, personal, delivery=claimed, issue=issue).as_bytes())


if __name__ == "__main__":
    main()
