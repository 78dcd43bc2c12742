"""Latency of ``POST /subscribe`` while the mail server is slow: a real
``newsletter serve`` process (waitress, its mail sender running) on a fresh
database, and an SMTP server (aiosmtpd) that takes 2 s to accept each
message. The subscribe only queues the confirmation in its transaction, so
its latency must not depend on the mail server: target p95 < 50 ms.

    .venv/bin/python bench/subscribe_latency.py [--count 300] [--smtp-delay 2]
                                                [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Each request is a real browser's: GET / for the CSRF token and cookie (not
timed), then the timed POST with a fresh address. It prints p50/p95/p99/max,
how many confirmations the slow server had accepted by the end (the sender
works through the queue at its own pace) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time

import requests
from send_common import bench_env, free_port, serve_command, serving, throwaway_database

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class SlowSmtp:
    """aiosmtpd that sleeps ``delay`` seconds before accepting each message's data."""

    def __init__(self, delay: float):
        from aiosmtpd.controller import Controller

        self.accepted = 0
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                await asyncio.sleep(delay)
                sink.accepted += 1
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SlowSmtp:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--smtp-delay", type=float, default=2.0)
    parser.add_argument(
        "--database-url", default="", help="a PostgreSQL server URL (a fresh database is created)"
    )
    args = parser.parse_args()

    with throwaway_database(args.database_url) as (url, work), SlowSmtp(args.smtp_delay) as smtp:
        port = free_port()
        env = bench_env(
            url,
            work,
            NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}",
            NEWSLETTER_TRANSPORT=f"smtp://127.0.0.1:{smtp.port}?timeout=30",
            NEWSLETTER_SUBSCRIBE_RATE_LIMIT="100000/minute",
        )
        with serving(serve_command(port), work, env, port) as base:  # stopped before the SMTP server
            run(args, base, smtp)


def run(args, base: str, smtp) -> None:
    """Sign-ups one after another, each by a new browser, timed from the POST."""
    timings: list[float] = []
    for n in range(args.count + 10):
        browser = requests.Session()
        token = CSRF.search(browser.get(f"{base}/", timeout=10).text).group(1)
        started = time.perf_counter()
        response = browser.post(
            f"{base}/subscribe",
            data={"csrf_token": token, "email": f"reader{n}@example.org"},
            allow_redirects=False,
            timeout=30,
        )
        took = time.perf_counter() - started
        assert response.status_code == 302, response.status_code
        if n >= 10:  # the first ten warm up the process
            timings.append(took * 1000)
    load = os.getloadavg()
    kind = "PostgreSQL" if args.database_url else "SQLite"
    print(f"POST /subscribe, {len(timings)} requests, {kind}, SMTP takes {args.smtp_delay:g} s a message")
    print(
        f"p50 {statistics.median(timings):.1f} ms · p95 {percentile(timings, 95):.1f} ms · "
        f"p99 {percentile(timings, 99):.1f} ms · max {max(timings):.1f} ms   (target p95 < 50 ms)"
    )
    print(
        f"confirmations accepted by the slow SMTP server meanwhile: {smtp.accepted} (the rest wait in the queue)"
    )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
