"""The send a user runs, each way it starts, into Postfix's smtp-sink, with
`smtp-source -d` sending the same number of messages of the same size over
the same number of sessions, in the same run, as the reference: once before
the first send and once after each, so each send's ratio is to the mean of
the reference runs just before and just after it (this machine's speed
drifts by a third within minutes; one reference run after all the sends
made the same send read 0.54 or 1.01 of smtp-source).

    .venv/bin/python bench/send_cli.py [--readers 20000] [--concurrency 8] [--processes 1,auto]
                                       [--path cli,scheduler,editor] [--dkim]
                                       [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

``--path`` (default ``cli``) names the ways the send starts; all of them
call ``delivery.deliver.deliver``:

- ``cli``: the real `newsletter issue send N --yes` command (progress bar
  included, a pseudo-terminal so rich draws it as it would for you); it
  sends in its own process(es). The clock starts with the command.
- ``scheduler``: a real `newsletter scheduler` process, the issue scheduled
  (``issues.service.schedule_issue``) for a moment that has come when it
  starts: its first tick starts the send (``deliver(…, here=False)``) and
  its sender thread (``delivery.runner``) sends it. The clock starts with
  the process.
- ``editor``: `newsletter serve` running and an editor logged in; the real
  POST of the "send now" form, CSRF token included, over HTTP; serve's
  sender thread sends it. The clock starts with the POST (serve's start-up
  is not counted).

Each path is also timed from the send's start as the issue row records it
(``send_started_at``: the command's, the tick's or the POST's
``start_send``). The sink's own counter (`smtp-sink -c`) says when the
first and the N-th message arrived. On a shared machine the wall clock to
the first message depends on the load; the CPU time the process tree had
used by then does not, so both are printed. One database and one sink serve
every run: each path for each value of ``--processes``
(NEWSLETTER_SEND_PROCESSES; ``default`` leaves it unset) sends its own issue
to every reader, in the order given. The weekly slot is set where it never
falls during a run, so only the bench's issues go out.

Memory: the process (the command, the scheduler, serve) and its sending
processes: the peak RSS of each process (VmHWM, the kernel's own peak) and
the peak PSS of the whole tree (/proc/PID/smaps_rollup: shared pages
counted once, split between the processes that share them), sampled every
0.2 s (every second above 100,000 readers).

CPU: smtp-sink is one process on one core. The CPU it used during each send,
and during smtp-source's run, is printed: on a 2-core machine it is the
share of the second core the sender cannot have (smtp-source's run keeps it
at about a whole core). So is this script's own CPU during each send
(reading the sink's counter, sampling memory): it runs on the same cores as
the sender, and smtp-source's run has no memory sampling. Until 2026-12-01
it read every record of the counter as it came and sampled every 50 ms:
0.58–0.71 s of CPU in a 20,000-reader send, 0.17–0.21 s since; between
the first message and the last 2,000 it now reads every 50 ms (at a million
readers, reading every 2 ms had taken 13–18 s). With PostgreSQL, the CPU
its server's processes used during the send is printed too.

``BENCH_WRAP`` (the cli path): a command line put in front of the
command's interpreter, e.g. ``py-spy record -o prof.txt -f raw --`` to
profile the send, ``/usr/bin/time -f %U_%S_%e`` for its CPU, or
``.venv/bin/python bench/send_timeline.py`` for where its first second goes.

With the reference, each run also prints how long the start before the
send could have taken for 0.8 end to end at the speed its sending phase
had: readers / (0.8 × smtp-source's rate) minus the sending phase's time.

Targets (issue 15): ≥ 0.8 of smtp-source end to end; the first message
within 0.5 s; ``auto`` never slower than one process at 1,000 readers or
more, its tree within 1.3× one process's PSS; with DKIM ≥ 0.4; and the
same figures for a send the scheduler starts and one started from the
editor's "send now".
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path

import requests
from send_common import (
    ROOT,
    CountingSink,
    Memory,
    add_readers,
    cpu_seconds,
    csrf_token,
    database_cpu_seconds,
    dkim_settings,
    drain,
    free_port,
    load,
    make_issue,
    sender_env,
    serve_command,
    serving,
    settings_for,
    smtp_source_rate,
    throwaway_database,
)
from send_smtp import _average_size

PATHS = {  # name: (label, the clock's start, the CPU used by the first message)
    "cli": ("issue send", "the command's start", "the command had used {:.2f} s of CPU"),
    "scheduler": ("scheduler", "the scheduler's start", "the scheduler had used {:.2f} s of CPU"),
    "editor": ("editor send now", "the POST", "serve used {:.2f} s of CPU after the POST"),
}
SCHEDULE = {  # a weekly slot that never falls near a run: only the bench's issues go out
    "NEWSLETTER_SCHEDULE": "0 3 29 2 *",
    "NEWSLETTER_REVIEW_HOURS": "0",
}
EDITOR = ("bench-editor@example.org", "bench editor password 42")
PERF_EPOCH = time.time() - time.perf_counter()  # a database timestamp on the sink's clock


@contextmanager
def database(url: str) -> Iterator[None]:
    """The bench's own engine, only while it reads or writes (none is held during a send)."""
    from newsletter.db import dispose_engine, init_engine

    init_engine(url)
    try:
        yield
    finally:
        dispose_engine()


def issue_row(url: str, number: int):
    from newsletter.db import session_scope
    from newsletter.issues.service import require_issue

    with database(url), session_scope() as session:
        issue = require_issue(session, number)
        return issue.status, issue.send_started_at


def wait_until_sent(url: str, number: int, timeout: float = 120) -> None:
    """The sender finishes the issue (``sent``) once the last row is recorded."""
    deadline = time.perf_counter() + timeout
    while (status := issue_row(url, number)[0]) != "sent":
        if time.perf_counter() > deadline:
            raise SystemExit(f"issue {number} is still {status} {timeout:.0f} s after its last message")
        time.sleep(0.05)


def wait_for_free_lock(url: str, timeout: float = 120) -> float:
    """Seconds until no process holds the scheduler's single-runner lock: a
    serve or scheduler that did not exit cleanly (killed, not stopped) leaves
    its SQLite lease to expire (up to NEWSLETTER_SCHEDULER_LOCK_SECONDS), and
    a scheduler started meanwhile would stand by that long. Returns the
    seconds waited."""
    from newsletter.db import get_engine
    from newsletter.scheduling.lock import lock_state

    started = time.perf_counter()
    while True:
        with database(url):
            if not lock_state(get_engine())["held"]:
                return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the scheduler lock is still held after {timeout:.0f} s")
        time.sleep(0.2)


class Watch:
    """One send measured: the sink's messages from now on, the tree of ``pid``
    sampled meanwhile, its CPU by the first message (less ``cpu_before``)."""

    def __init__(self, sink: CountingSink, pid: int, readers: int, cpu_before: float = 0.0) -> None:
        self.sink, self.readers, self.cpu_before = sink, readers, cpu_before
        self.before = sink.messages
        self.sink_cpu = sink.cpu_seconds()
        self.database_cpu = database_cpu_seconds()
        sink.cpu_at_watch, sink.watch = None, (self.before + 1, pid)
        sink.finish = self.before + readers
        self.memory = Memory(pid, every=0.2 if readers <= 100_000 else 1.0)
        self.own_cpu = time.process_time()

    def wait(self) -> None:
        self.sink.wait_for(self.before + self.readers)
        self.sink_cpu = self.sink.cpu_seconds() - self.sink_cpu
        self.database_cpu = database_cpu_seconds() - self.database_cpu
        self.own_cpu = time.process_time() - self.own_cpu

    def result(self, url: str, number: int, started: float) -> dict:
        """The figures from ``started`` (perf_counter) and from the issue row's send start."""
        self.memory.stop()
        stamp = issue_row(url, number)[1]
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return {
            "started": started,
            "send_started": stamp.timestamp() - PERF_EPOCH,
            "first": self.sink.time_of(self.before + 1),
            "last": self.sink.time_of(self.before + self.readers),
            "first_cpu": (self.sink.cpu_at_watch or 0) - self.cpu_before,
            "peak_pss": self.memory.peak_pss / 1024,
            "rss": {pid: value / 1024 for pid, value in self.memory.rss.items()},
            "processes": len(self.memory.processes),
            "sink_cpu": self.sink_cpu,
            "database_cpu": self.database_cpu,
            "own_cpu": self.own_cpu,
        }


def run_cli(env: dict, number: int, sink: CountingSink, readers: int, url: str) -> dict:
    """`newsletter issue send N --yes`: the clock starts with the command."""
    master, slave = pty.openpty()  # rich draws its live bar on a terminal, as for a user
    started = time.perf_counter()
    command = subprocess.Popen(
        [*os.environ.get("BENCH_WRAP", "").split(), sys.executable, "-m", "newsletter"]
        + ["issue", "send", str(number), "--yes"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    watch = Watch(sink, command.pid, readers)
    output = []
    reader = threading.Thread(target=drain, args=(master, output), daemon=True)
    reader.start()
    watch.wait()
    code = command.wait()
    reader.join(2)
    if code != 0:
        print(b"".join(output).decode(errors="replace")[-2000:])
        raise SystemExit(f"issue send exited with {code}")
    return watch.result(url, number, started)


def run_scheduler(env: dict, number: int, sink: CountingSink, readers: int, url: str) -> dict:
    """`newsletter scheduler` with the issue scheduled (``schedule_issue``) for
    a moment that has come when it starts: its first tick starts the send
    (``deliver(…, here=False)``), its sender thread (``delivery.runner``) sends
    it. The clock starts with the process."""
    from newsletter import clock
    from newsletter.issues.service import schedule_issue

    waited = wait_for_free_lock(url)
    if waited > 0.5:
        print(f"    waited {waited:.1f} s for the scheduler lock a previous process left behind", flush=True)
    with database(url):
        schedule_issue(number, clock.now() + timedelta(milliseconds=100), by="bench")
    log = Path(env["NEWSLETTER_INSTANCE_PATH"]).parent / "scheduler.log"
    started = time.perf_counter()
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "scheduler"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        watch = Watch(sink, scheduler.pid, readers)
        watch.wait()
        wait_until_sent(url, number)
        return watch.result(url, number, started)
    except BaseException:
        print(log.read_text()[-3000:])
        raise
    finally:
        scheduler.terminate()
        scheduler.wait(30)


def run_editor(env: dict, number: int, sink: CountingSink, readers: int, url: str) -> dict:
    """`newsletter serve` running, an editor logged in: the real POST of the
    send-now form (``deliver(…, here=False)``), sent by serve's sender thread
    (``delivery.runner``). The clock starts with the POST."""
    port = free_port()
    work = Path(env["NEWSLETTER_INSTANCE_PATH"]).parent
    servers: list[subprocess.Popen] = []
    with serving(serve_command(port), work, env, port, on_start=servers.append) as base:
        browser = requests.Session()
        email, password = EDITOR
        token = csrf_token(visit(browser, "GET", f"{base}/editor/login").text)
        answer = visit(
            browser,
            "POST",
            f"{base}/editor/login",
            data={"csrf_token": token, "email": email, "password": password},
        )
        if answer.status_code != 302:
            raise SystemExit(f"the editor's login answered {answer.status_code}")
        form = f"{base}/editor/issues/{number}/send"
        token = csrf_token(visit(browser, "GET", form).text)
        pid = servers[0].pid
        watch = Watch(sink, pid, readers, cpu_before=cpu_seconds(pid))
        started = time.perf_counter()
        answer = visit(browser, "POST", form, data={"csrf_token": token, "confirm_number": number})
        status = issue_row(url, number)[0]
        if answer.status_code != 302 or status not in ("sending", "sent"):
            raise SystemExit(f"send now answered {answer.status_code}; the issue is {status}")
        watch.wait()
        wait_until_sent(url, number)
        return watch.result(url, number, started)


def visit(browser: requests.Session, method: str, url: str, **kwargs) -> requests.Response:
    """One request of the editor's browser. Its cookies are Secure (the public
    URL is https) and serve answers on plain http here, as behind a proxy that
    ends TLS, so they are kept sendable."""
    answer = browser.request(method, url, allow_redirects=False, timeout=60, **kwargs)
    for cookie in browser.cookies:
        cookie.secure = False
    return answer


RUNNERS = {"cli": run_cli, "scheduler": run_scheduler, "editor": run_editor}


def message_size(settings, number: int) -> int:
    """The size smtp-source must send, known before the first send: an issue
    made as the sent ones are, frozen here (its renders only: it stays
    approved, no reader gets it), one reader's message built from it."""
    from newsletter.db import session_scope
    from newsletter.models import Issue
    from newsletter.rendering.issue import freeze_issue

    issue_id = make_issue(settings, number)
    with session_scope() as session:
        freeze_issue(session, session.get(Issue, issue_id), settings)
    return _average_size(settings, issue_id)


def describe(path: str, mode: str, r: dict, readers: int, reference: float | None) -> str:
    label, start, cpu = PATHS[path]

    def since(moment: float) -> str:
        took = r["last"] - moment
        rate = readers / took
        ratio = f"  ratio {rate / reference:.2f} of smtp-source" if reference else ""
        return f"{rate:8,.0f} msg/s ({took:.2f} s){ratio}; first message after {r['first'] - moment:.2f} s"

    rss = ", ".join(f"{v:.0f}" for v in sorted(r["rss"].values(), reverse=True))
    before_send = r["send_started"] - r["started"]
    room = ""
    if reference:
        # 0.8 end to end means the whole run within readers / (0.8 × reference): what the
        # sending phase, at the speed it had, leaves of that for the start-up before it.
        allowed = readers / (0.8 * reference) - (r["last"] - r["send_started"])
        room = (
            f"    for 0.8 end to end at this sending speed the start before the send could take "
            f"{allowed:.2f} s; it took {before_send:.2f} s\n"
        )
    return (
        f"{label}, processes={mode}\n"
        f"    from {start + ':':<28} {since(r['started'])}\n"
        f"    from the send's start (issue row, {before_send:.2f} s after {start}):\n"
        f"    {'':<33} {since(r['send_started'])}\n"
        f"{room}"
        f"    {cpu.format(r['first_cpu'])} by the first message; {r['processes']} process(es), "
        f"peak PSS of the tree {r['peak_pss']:.0f} MB, peak RSS each {rss} MB\n"
        f"    smtp-sink used {r['sink_cpu']:.2f} s of CPU meanwhile ({r['sink_cpu'] / (r['last'] - r['started']):.0%} of a core), "
        f"this script {r['own_cpu']:.2f} s (reading the sink's counter, sampling memory)"
        + (f", PostgreSQL {r['database_cpu']:.2f} s" if r["database_cpu"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--processes", default="1,auto", help="comma-separated NEWSLETTER_SEND_PROCESSES values, or default"
    )
    parser.add_argument(
        "--path", default="cli", help="comma-separated ways the send starts: cli, scheduler, editor"
    )
    parser.add_argument("--dkim", action="store_true")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--no-reference", action="store_true", help="skip smtp-source (for 1M runs)")
    args = parser.parse_args()
    paths = args.path.split(",")
    if unknown := set(paths) - set(PATHS):
        parser.error(f"unknown --path {', '.join(sorted(unknown))}: choose from {', '.join(PATHS)}")
    # An installed package carries its bytecode; a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module at each start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "newsletter")], check=True)

    with throwaway_database(args.database_url) as (url, work), CountingSink() as sink:
        dkim = dkim_settings(work) if args.dkim else {}
        settings = settings_for(url, work, transport=sink.dsn, send_concurrency=args.concurrency, **dkim)
        runs = [(path, mode) for mode in args.processes.split(",") for path in paths]
        for number in range(1, len(runs) + 1):
            make_issue(settings, number)
        add_readers(args.readers)
        if "editor" in paths:
            from newsletter.db import session_scope
            from newsletter.editor.service import create_editor

            with session_scope() as session:
                create_editor(session, *EDITOR, "editor")
        size = message_size(settings, len(runs) + 1)
        env = sender_env(url, work, settings, COLUMNS="100", **SCHEDULE)
        from newsletter.db import dispose_engine

        dispose_engine()
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(
            f"{args.readers} readers, {args.concurrency} SMTP sessions, DKIM {'on' if args.dkim else 'off'}, "
            f"{backend}, {os.cpu_count()} CPUs"
        )
        references: list[tuple[float, float]] = []  # (msg/s, smtp-sink's CPU share of a core)

        def reference_run() -> None:
            print(f"load average before smtp-source: {load()}", flush=True)
            sink_before, counted = sink.cpu_seconds(), sink.messages
            rate = smtp_source_rate(sink.port, args.readers, size, args.concurrency)
            # The counter is read up to 50 ms late: until it has seen the
            # reference's last message, the next send's count would start
            # below it, and that message would read as the send's first.
            sink.wait_for(counted + args.readers)
            references.append((rate, (sink.cpu_seconds() - sink_before) * rate / args.readers))

        results = {}
        if not args.no_reference:
            reference_run()
        for number, (path, mode) in enumerate(runs, start=1):
            run_env = dict(env)
            if mode != "default":
                run_env["NEWSLETTER_SEND_PROCESSES"] = mode
            print(f"load average before {path}, processes={mode}: {load()}", flush=True)
            results[(number, path, mode)] = RUNNERS[path](run_env, number, sink, args.readers, url)
            if not args.no_reference:
                reference_run()
        print(f"message size        {size} bytes")
        for index, ((_, path, mode), r) in enumerate(results.items()):
            reference = None
            if references:
                before, after = references[index][0], references[index + 1][0]
                reference = (before + after) / 2
            print(describe(path, mode, r, args.readers, reference))
            if reference:
                print(f"    smtp-source just before and just after: {before:,.0f} and {after:,.0f} msg/s")
        if references:
            rates = ", ".join(f"{rate:,.0f}" for rate, _ in references)
            shares = ", ".join(f"{share:.0%}" for _, share in references)
            print(
                f"smtp-source -d      {rates} msg/s ({args.concurrency} sessions), in the order run; "
                f"smtp-sink used {shares} of a core meanwhile"
            )
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
