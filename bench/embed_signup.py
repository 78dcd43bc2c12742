"""What a sign-up through the embedded box costs, beside the front page's form
and the plain JSON API, measured in the same run against one real
``newsletter serve`` process (waitress, its mail sender running, outbox://)
on a fresh database.

    .venv/bin/python bench/embed_signup.py [--count 200]
                                           [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The box's sign-up does more than the API's: it checks its signed form token
and adds one to the per-source count in a second short transaction. The
three kinds of request are interleaved (one of each in turn, each with a
fresh address) so that they share the machine's noise. Untimed: fetching
the page or the box first (the CSRF token, the form token). It prints
p50/p95/max per kind and the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import requests
from send_common import bench_env, free_port, serve_command, serving, throwaway_database

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
HOST = "https://blog.example.org"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def front_page(base: str, email: str) -> float:
    browser = requests.Session()
    token = CSRF.search(browser.get(f"{base}/", timeout=10).text).group(1)
    started = time.perf_counter()
    response = browser.post(
        f"{base}/subscribe", data={"csrf_token": token, "email": email}, allow_redirects=False, timeout=30
    )
    took = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    return took


def api(base: str, email: str) -> float:
    started = time.perf_counter()
    response = requests.post(f"{base}/api/v1/subscribers", json={"email": email}, timeout=30)
    took = time.perf_counter() - started
    assert response.status_code == 202, response.status_code
    return took


def box(base: str, email: str) -> float:
    html = requests.get(f"{base}/embed/box?page=/posts/bench", headers={"Origin": HOST}, timeout=10).json()[
        "html"
    ]
    body = {"email": email, "form_token": FORM_TOKEN.search(html).group(1), "timezone": "Europe/Berlin"}
    started = time.perf_counter()
    response = requests.post(f"{base}/api/v1/subscribers", json=body, headers={"Origin": HOST}, timeout=30)
    took = time.perf_counter() - started
    assert response.status_code == 202, (response.status_code, response.text)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument(
        "--database-url", default="", help="a PostgreSQL server URL (a fresh database is created)"
    )
    args = parser.parse_args()

    with throwaway_database(args.database_url) as (url, work):
        port = free_port()
        env = bench_env(
            url,
            work,
            NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}",
            NEWSLETTER_TRANSPORT="outbox://",
            NEWSLETTER_SUBSCRIBE_RATE_LIMIT="100000/minute",
            NEWSLETTER_CONFIRM_MAX_PER_DAY="100000",
            NEWSLETTER_EMBED_ORIGINS=HOST,
        )
        with serving(serve_command(port), work, env, port) as base:  # stopped before the database goes
            run(args, base)


def run(args, base: str) -> None:
    """Each kind of sign-up in turn, ``count`` rounds after ten to warm up."""
    kinds = {
        "POST /subscribe (front page)": front_page,
        "POST /api/v1/subscribers": api,
        "the box (API + form token)": box,
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    for n in range(args.count + 10):
        for i, (name, sign_up) in enumerate(kinds.items()):
            took = sign_up(base, f"reader{n}-{i}@example.org")
            if n >= 10:  # the first rounds warm up the process
                timings[name].append(took * 1000)
    load = os.getloadavg()
    kind = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.count} sign-ups of each kind, interleaved, {kind}, newsletter serve (waitress)")
    for name, values in timings.items():
        print(
            f"{name:32} p50 {statistics.median(values):6.1f} ms · p95 {percentile(values, 95):6.1f} ms · "
            f"max {max(values):6.1f} ms"
        )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
