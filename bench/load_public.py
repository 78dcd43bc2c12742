"""Public pages under load: a real `newsletter serve` process (waitress, as
the README's single-process role runs it), or with `--server gunicorn` the
web unit's command from deploy/ (`gunicorn --workers 4 'newsletter.app:create_app()'`),
on a fresh database with sections and one sent issue, and `wrk` with 32
concurrent connections against `/`, `/issues` and `/issues/1` — once as
plain GETs (what a CDN's cache miss or a browser's first visit costs), once
as conditional GETs carrying the page's ETag (what a CDN's or a browser's
revalidation costs: 304, no body).

    .venv/bin/python bench/load_public.py [--seconds 15] [--connections 32] [--threads 8]
                                          [--server waitress|gunicorn] [--workers 4] [--paths / /issues]
                                          [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Target (issue 15): no error and p99 < 200 ms at 32 concurrent clients. `wrk`
is Debian's package (`apt-get install wrk`); it runs on the same 2 cores as
the server, so the figures are the machine's, not the server's alone. The
load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests
from send_common import (
    bench_env,
    free_port,
    make_issue,
    serve_command,
    serving,
    settings_for,
    throwaway_database,
)

WARM_UP = 40


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", output, re.M))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rate": rate,
        "requests": total,
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "non_2xx_3xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (serve --threads)")
    parser.add_argument("--server", choices=("waitress", "gunicorn"), default="waitress")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (deploy/systemd: 4)")
    parser.add_argument("--paths", nargs="+", default=["/", "/issues", "/issues/1"])
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")

    from newsletter.db import dispose_engine
    from newsletter.delivery.deliver import deliver

    with throwaway_database(args.database_url) as (url, work):
        settings = settings_for(url, work)
        make_issue(settings, 1)
        deliver(settings, 1, here=True)  # no readers: the issue is sent, so it is public
        dispose_engine()
        port = free_port()
        env = bench_env(
            url,
            work,
            NEWSLETTER_ENV="production",
            NEWSLETTER_SECRET_KEY=settings.secret_key,
            NEWSLETTER_BASE_URL="https://news.example.org",  # production asks for https; links only
            NEWSLETTER_TRANSPORT="outbox://",
        )
        if args.server == "gunicorn":  # the web unit's command (deploy/systemd/newsletter-web.service)
            command = [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(args.workers)]
            command += ["--bind", f"127.0.0.1:{port}", "newsletter.app:create_app()"]
            described = f"gunicorn, {args.workers} sync workers"
        else:
            command = serve_command(port, "--threads", str(args.threads))
            described = f"newsletter serve (waitress, {args.threads} threads)"
        with serving(command, work, env, port) as base:
            run(args, base, described)


def run(args, base: str, described: str) -> None:
    """wrk on each page: plain GETs, then conditional ones with the page's ETag."""
    kind = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{described}, {kind}; wrk -c {args.connections} -d {args.seconds}s; {os.cpu_count()} CPUs")
    for path in args.paths:
        for _ in range(WARM_UP):  # a connection each: every gunicorn worker has served the page once
            first = requests.get(base + path, timeout=10)
            assert first.status_code == 200, (path, first.status_code)
        runs = [("GET", {})]
        if "ETag" in first.headers:
            runs.append(("GET If-None-Match", {"If-None-Match": first.headers["ETag"]}))
        for label, headers in runs:
            before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            r = wrk(base + path, args.seconds, args.connections, headers)
            print(
                f"{path:<10} {label:<17} {r['rate']:8,.0f} req/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}  "
                f"errors {r['non_2xx_3xx'] + r['socket_errors']} of {r['requests']:,}  "
                f"(load {before})"
            )
        print(
            f"{'':<10} headers: ETag {first.headers.get('ETag', '—')[:20]}…, "
            f"Cache-Control {first.headers.get('Cache-Control', '—')}, "
            f"Set-Cookie {'yes' if 'Set-Cookie' in first.headers else 'no'}"
        )


if __name__ == "__main__":
    main()
