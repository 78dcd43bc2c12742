"""Peak memory (RSS) of a real sending process (`newsletter issue send`)
sending to a million readers into Postfix's smtp-sink.

    .venv/bin/python bench/send_rss.py [--readers 1000000] [--seconds 0]
                                       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Target: under 150 MB. The sender streams: it holds one claimed batch per
thread, never the list of readers. ``--seconds N`` stops the send (SIGTERM,
which the CLI turns into a clean stop) after N seconds, for a measurement
over a large part of the send when the whole would take too long; the
figures say how many messages were sent while measuring.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from send_common import ROOT, SmtpSink, add_readers, make_issue, sender_env, settings_for, throwaway_database


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def sent_so_far(url: str) -> int:
    from sqlalchemy import func, select

    from newsletter.db import session_scope
    from newsletter.models import Delivery

    with session_scope() as session:
        return session.execute(select(func.count()).where(Delivery.status == "sent")).scalar()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = send everything)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with throwaway_database(args.database_url) as (url, work), SmtpSink() as sink:
        settings = settings_for(url, work, transport=sink.dsn, send_concurrency=args.concurrency)
        make_issue(settings, 1)
        add_readers(args.readers)
        env = sender_env(url, work, settings)
        started = time.perf_counter()
        sender = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "issue", "send", "1", "--yes"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        peak = 0
        samples = []
        stopped = False
        while sender.poll() is None:
            peak = max(peak, status_kb(sender.pid, "VmHWM"))
            samples.append(status_kb(sender.pid, "VmRSS"))
            if args.seconds and not stopped and time.perf_counter() - started > args.seconds:
                sender.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        sent = sent_so_far(url)
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(f"database            {backend}, {args.readers} readers, concurrency {args.concurrency}")
        print(
            f"sent while measured {sent} in {elapsed:.0f} s ({sent / elapsed:,.0f} msg/s incl. start-up, freeze and fan-out)"
        )
        print(f"sender exit code    {sender.returncode}{' (stopped by --seconds)' if stopped else ''}")
        quarter = samples[len(samples) // 4 :] or samples
        print(
            f"RSS                 peak {peak / 1024:.1f} MB; median over the last 3/4 {sorted(quarter)[len(quarter) // 2] / 1024:.1f} MB (target < 150 MB)"
        )
        if sender.returncode not in (0, 3):
            print(sender.stderr.read().decode()[-2000:])


if __name__ == "__main__":
    main()
