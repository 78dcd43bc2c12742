"""The send a user runs: the real `newsletter issue send N --yes` command
(progress bar included, a pseudo-terminal so rich draws it as it would for
you) into Postfix's smtp-sink, with `smtp-source -d` sending the same number
of messages of the same size over the same number of sessions, in the same
run, as the reference.

    .venv/bin/python bench/send_cli.py [--readers 20000] [--concurrency 8] [--processes 1,auto]
                                       [--dkim] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The clock runs from the command's start (a fresh interpreter: imports,
settings, freeze, fan-out, forking, everything) to the sink's N-th message;
the sink's own counter (`smtp-sink -c`) says when the first and the last
message arrived. On a shared machine the wall clock to the first message
depends on the load; the CPU time the command (and its children) had used
by then does not, and on an idle machine the two are nearly equal (start-up
runs on one thread), so both are printed. One database and one sink serve every run: each value of
``--processes`` (NEWSLETTER_SEND_PROCESSES; ``default`` leaves it unset)
sends its own issue to every reader, in the order given.

Memory: the command and its sending processes are sampled every 50 ms:
the peak RSS of each process (VmHWM) and the peak PSS of the whole tree
(/proc/PID/smaps_rollup: shared pages counted once, split between the
processes that share them).

Targets (issue 15): ≥ 0.8 of smtp-source end to end; the first message
within 0.5 s; ``auto`` never slower than one process at 1,000 readers or
more, its tree within 1.3× one process's PSS; with DKIM ≥ 0.4.
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import threading
import time

from send_common import (
    ROOT,
    CountingSink,
    Memory,
    add_readers,
    bench_env,
    cleanup,
    drain,
    drop_database,
    load,
    make_database,
    make_issue,
    settings_for,
    smtp_source_rate,
)
from send_smtp import _average_size


def run_command(env: dict, number: int, sink: CountingSink, readers: int) -> dict:
    before = sink.messages
    master, slave = pty.openpty()  # rich draws its live bar on a terminal, as for a user
    started = time.perf_counter()
    command = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "issue", "send", str(number), "--yes"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    sink.cpu_at_watch, sink.watch = None, (before + 1, command.pid)
    memory = Memory(command.pid)
    output = []
    reader = threading.Thread(target=drain, args=(master, output), daemon=True)
    reader.start()
    last = sink.wait_for(before + readers)
    code = command.wait()
    memory.stop()
    reader.join(2)
    if code != 0:
        print(b"".join(output).decode(errors="replace")[-2000:])
        raise SystemExit(f"issue send exited with {code}")
    first = sink.time_of(before + 1)
    return {
        "first": first - started,
        "first_cpu": sink.cpu_at_watch,
        "last": last - started,
        "rate": readers / (last - started),
        "peak_pss": memory.peak_pss / 1024,
        "rss": {pid: value / 1024 for pid, value in memory.rss.items()},
        "processes": len(memory.processes),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--processes", default="1,auto", help="comma-separated NEWSLETTER_SEND_PROCESSES values, or default"
    )
    parser.add_argument("--dkim", action="store_true")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--no-reference", action="store_true", help="skip smtp-source (for 1M runs)")
    args = parser.parse_args()
    # An installed package carries its bytecode; a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module at each start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "newsletter")], check=True)

    from newsletter.delivery.dkim import generate_key

    url, work = make_database(args.database_url)
    sink = CountingSink()
    try:
        dkim = {}
        if args.dkim:
            generate_key(work / "dkim.pem")
            dkim = dict(
                dkim_domain="example.org", dkim_selector="bench", dkim_key_file=str(work / "dkim.pem")
            )
        settings = settings_for(url, work, transport=sink.dsn, send_concurrency=args.concurrency, **dkim)
        modes = args.processes.split(",")
        for number in range(1, len(modes) + 1):
            make_issue(settings, number)
        add_readers(args.readers)
        env = bench_env(
            url,
            work,
            NEWSLETTER_ENV="testing",
            NEWSLETTER_SECRET_KEY=settings.secret_key,
            NEWSLETTER_BASE_URL=settings.base_url,
            NEWSLETTER_MAIL_FROM=settings.mail_from,
            NEWSLETTER_TRANSPORT=sink.dsn,
            NEWSLETTER_SEND_CONCURRENCY=str(args.concurrency),
            COLUMNS="100",
        )
        if args.dkim:
            env.update(
                NEWSLETTER_DKIM_DOMAIN="example.org",
                NEWSLETTER_DKIM_SELECTOR="bench",
                NEWSLETTER_DKIM_KEY_FILE=str(work / "dkim.pem"),
            )
        from newsletter.db import dispose_engine

        dispose_engine()
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(
            f"{args.readers} readers, {args.concurrency} SMTP sessions, DKIM {'on' if args.dkim else 'off'}, "
            f"{backend}, {os.cpu_count()} CPUs"
        )
        results = {}
        for number, mode in enumerate(modes, start=1):
            run_env = dict(env)
            if mode != "default":
                run_env["NEWSLETTER_SEND_PROCESSES"] = mode
            print(f"load average before processes={mode}: {load()}", flush=True)
            results[(number, mode)] = run_command(run_env, number, sink, args.readers)
        from newsletter.db import init_engine

        init_engine(url)
        size = _average_size(settings, 1)
        reference = None
        if not args.no_reference:
            print(f"load average before smtp-source: {load()}", flush=True)
            reference = smtp_source_rate(sink.port, args.readers, size, args.concurrency)
        print(f"message size        {size} bytes")
        for (_, mode), r in results.items():
            ratio = f"  ratio {r['rate'] / reference:.2f} of smtp-source" if reference else ""
            rss = ", ".join(f"{v:.0f}" for v in sorted(r["rss"].values(), reverse=True))
            print(
                f"issue send, processes={mode:<7} {r['rate']:8,.0f} msg/s end to end ({r['last']:.2f} s){ratio}\n"
                f"    first message after {r['first']:.2f} s (the command had used {r['first_cpu'] or 0:.2f} s of CPU); "
                f"{r['processes']} process(es), "
                f"peak PSS of the tree {r['peak_pss']:.0f} MB, peak RSS each {rss} MB"
            )
        if reference:
            print(f"smtp-source -d      {reference:8,.0f} msg/s ({args.concurrency} sessions)")
        print(f"load average after: {load()}")
    finally:
        sink.stop()
        drop_database(url)
        cleanup(work)


if __name__ == "__main__":
    main()
