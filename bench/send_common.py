"""Shared setup of the sending benchmarks: a migrated database for one run
(``throwaway_database``: a fresh SQLite file, or a fresh database on the
PostgreSQL server you name; dropped at the end), a real issue (articles in
two sections, rendered by MJML when frozen), N readers created in the
database with one INSERT … SELECT, and Postfix's smtp-sink; and the
measuring of a send: the sink's own counter (``CountingSink``), the CPU time
and the memory of a process tree (``cpu_seconds``, ``Memory``)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_database(database_url: str = "") -> Iterator[tuple[str, Path]]:
    """A fresh migrated database and a work folder for one run, as ``(url, work)``:
    a SQLite file in the folder, or with ``database_url`` (a PostgreSQL server)
    a new database on that server. On the way out the database is dropped and
    the folder removed, so that every run leaves nothing behind, even when it
    fails or is stopped with Ctrl-C."""
    from newsletter import db

    with tempfile.TemporaryDirectory(prefix="signal-bench-", ignore_cleanup_errors=True) as folder:
        work = Path(folder)
        url = _create_database(database_url, work)
        try:
            db.upgrade(url)
            db.init_engine(url)
            yield url, work
        finally:
            _drop_database(url)


def _create_database(server: str, work: Path) -> str:
    """The URL of a new, empty database: ``bench.db`` in ``work``, or with
    ``server`` a database of its own on that PostgreSQL server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not server:
        return f"sqlite:///{work / 'bench.db'}"
    name = f"signal_bench_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter import db

    db.dispose_engine()
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def settings_for(url: str, work: Path, **overrides):
    from newsletter.config import load_settings

    values = dict(
        env="testing",
        database_url=url,
        secret_key="bench-" + "k" * 40,
        base_url="https://news.example.org",
        mail_from="GET THE SIGNAL <signal@example.org>",
        instance_path=str(work / "instance"),
        transport="outbox://",
    )
    values.update(overrides)
    return load_settings(environ={}, **values)


def add_readers(count: int) -> float:
    """Create ``count`` active readers with one INSERT … SELECT; returns seconds."""
    from sqlalchemy import text

    from newsletter import clock
    from newsletter.db import is_sqlite, session_scope

    now = clock.now()
    started = time.perf_counter()
    with session_scope() as session:
        if is_sqlite():
            session.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                    "INSERT INTO subscriber (email, email_hash, name, status, topics, created_at, updated_at, "
                    "consent_source, consent_text, confirm_sent_count) "
                    "SELECT 'reader' || i || '@example.org', lower(hex(randomblob(32))), 'Reader ' || i, 'active', "
                    "CASE WHEN i % 10 = 0 THEN 'agents' ELSE '' END, :now, :now, 'import', '', 0 FROM n"
                ),
                {"count": count, "now": now.strftime("%Y-%m-%d %H:%M:%S.%f")},
            )
        else:
            session.execute(
                text(
                    "INSERT INTO subscriber (email, email_hash, name, status, topics, created_at, updated_at, "
                    "consent_source, consent_text, confirm_sent_count) "
                    "SELECT 'reader' || g || '@example.org', "
                    "encode(sha256(convert_to('reader' || g || '@example.org', 'UTF8')), 'hex'), 'Reader ' || g, "
                    "'active', CASE WHEN g % 10 = 0 THEN 'agents' ELSE '' END, :now, :now, 'import', '', 0 "
                    "FROM generate_series(1, :count) g"
                ),
                {"count": count, "now": now},
            )
    if not is_sqlite():
        with session_scope() as session:
            session.execute(text("ANALYZE"))
    return time.perf_counter() - started


def make_issue(settings, number: int = 1) -> int:
    from tests.delivery_fixtures import make_issue as fixture_issue

    return fixture_issue(settings, number)


class SmtpSink:
    """Postfix's smtp-sink on a loopback port (accepts and discards).
    ``count``: it prints its running message counter (``-c``) on its output."""

    def __init__(self, backlog: int = 512, *, count: bool = False):
        if not Path(SMTP_SINK).exists():
            raise SystemExit("Postfix's smtp-sink is missing: apt-get install postfix")
        self.port = free_port()
        command = [SMTP_SINK, *(["-c"] if count else [])]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        command += [f"127.0.0.1:{self.port}", str(backlog)]
        output = subprocess.PIPE if count else subprocess.DEVNULL
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")

    def cpu_seconds(self) -> float:
        """CPU time smtp-sink has used so far (user + system)."""
        return cpu_seconds(self.process.pid)

    @property
    def dsn(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        """Stopped when the ``with`` block ends, however it ends."""
        self.stop()


def smtp_source_rate(port: int, count: int, size: int, concurrency: int) -> float:
    """messages/s of Postfix's smtp-source -d (one connection per session kept open)."""
    started = time.perf_counter()
    subprocess.run(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            str(concurrency),
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "signal@example.org",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


def bench_env(url: str, work: Path, **settings: str) -> dict:
    """The environment of a `newsletter` process for a benchmark: none of the
    caller's NEWSLETTER_* settings, the bench database and instance folder,
    and ``settings`` (NEWSLETTER_… names, or any other variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DATABASE_URL=url, NEWSLETTER_INSTANCE_PATH=str(work / "instance"), PYTHONPATH=str(ROOT)
    )
    env.update(settings)
    return env


def dkim_settings(work: Path) -> dict[str, str]:
    """Settings that sign every message with DKIM (RSA-2048), with a fresh
    key written in ``work``."""
    from newsletter.delivery.dkim import generate_key

    key = work / "dkim.pem"
    generate_key(key)
    return {"dkim_domain": "example.org", "dkim_selector": "bench", "dkim_key_file": str(key)}


def sender_env(url: str, work: Path, settings, **extra: str) -> dict:
    """``bench_env`` of a `newsletter` command that sends as ``settings``
    does: the same secret, base URL, sender, transport, number of sessions
    and DKIM key; ``extra`` adds other variables."""
    values = {
        "NEWSLETTER_ENV": "testing",
        "NEWSLETTER_SECRET_KEY": settings.secret_key,
        "NEWSLETTER_BASE_URL": settings.base_url,
        "NEWSLETTER_MAIL_FROM": settings.mail_from,
        "NEWSLETTER_TRANSPORT": settings.transport,
        "NEWSLETTER_SEND_CONCURRENCY": str(settings.send_concurrency),
    }
    if settings.dkim_key_file:
        values.update(
            NEWSLETTER_DKIM_DOMAIN=settings.dkim_domain,
            NEWSLETTER_DKIM_SELECTOR=settings.dkim_selector,
            NEWSLETTER_DKIM_KEY_FILE=settings.dkim_key_file,
        )
    return bench_env(url, work, **values, **extra)


@contextmanager
def serving(
    command: list[str], work: Path, env: dict, port: int, on_start: Callable | None = None
) -> Iterator[str]:
    """Run a web server ``command`` listening on ``port``; yield its base URL
    once ``/healthz`` answers, and stop it at the end. Its output goes to a
    log that is shown if it never answers. ``on_start`` is given the process."""
    import requests

    log = work / "serve.log"
    server = subprocess.Popen(command, cwd=work, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    if on_start is not None:
        on_start(server)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or no worker yet
                time.sleep(0.1)
        else:
            raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(page: str) -> str:
    """The CSRF token of a page's form."""
    match = CSRF.search(page)
    if match is None:
        raise SystemExit("no CSRF token in the page")
    return match.group(1)


def serve_command(port: int, *args: str) -> list[str]:
    """`newsletter serve` (waitress, as a user runs it) on ``port``."""
    return [sys.executable, "-m", "newsletter", "serve", "--port", str(port), *args]


# --- measuring a send: the sink's counter, CPU and memory of a process tree ---


class CountingSink(SmtpSink):
    """smtp-sink with its running counter (``-c``) read as it changes:
    the moment each message count was first seen."""

    def __init__(self) -> None:
        super().__init__(count=True)
        self.master = self.process.stdout.fileno()
        self.messages = 0
        self.times: dict[int, float] = {}
        self.watch: tuple[int, int] | None = None  # (message count, pid): note the tree's CPU then
        self.finish: int | None = None  # the count that ends the send being measured
        self.cpu_at_watch: float | None = None
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            pending += chunk
            *records, pending = pending.split(b"\r")
            # The sink writes a record per message; only the latest of a read
            # counts (its time is when every count up to it was first seen, to
            # within the 2 ms this thread sleeps between reads). This process
            # shares the sender's two cores: what it spends, the sender loses.
            field = records[-1].rpartition(b"mesg=")[2] if records else b""
            if not field:
                continue
            count = int(field.split(None, 1)[0])
            with self.lock:
                self.messages = count
                self.times.setdefault(count, now)
            if self.watch and self.cpu_at_watch is None and count >= self.watch[0]:
                self.cpu_at_watch = cpu_seconds(self.watch[1])
            # Let a few records gather: a wake-up a message cost 0.2 s a run.
            # 2 ms apart around the moments measured (the first message, the
            # last), 50 ms in between: at a million messages, reading every 2 ms
            # took 13–18 s of CPU from the sender's cores.
            time.sleep(0.002 if self._near_a_measured_moment(count) else 0.05)

    def _near_a_measured_moment(self, count: int) -> bool:
        if self.watch is None or self.finish is None:
            return True
        first, _ = self.watch
        return count < first + 100 or count >= self.finish - 2_000

    def wait_for(self, count: int, timeout: float = 3600) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                arrived = self.messages >= count
            if arrived:
                return self.time_of(count)
            time.sleep(0.01)
        raise SystemExit(f"the sink saw {self.messages} of {count} messages")

    def time_of(self, count: int) -> float:
        with self.lock:
            return min((t for n, t in self.times.items() if n >= count), default=float("nan"))


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo += [int(child) for child in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def _stat(pid) -> tuple[str, list[str]]:
    """A process's name and the fields of /proc/PID/stat after it (utime,
    stime, cutime, cstime at 11–14); ("", []) once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            name, fields = handle.read().split(" (", 1)[1].rsplit(")", 1)
    except (FileNotFoundError, ProcessLookupError):
        return "", []
    return name, fields.split()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its descendants."""
    total = 0
    for each in tree(pid):
        fields = _stat(each)[1]
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this machine's PostgreSQL: its
    processes', and its ended backends' (counted in the server's children
    time). 0 where no PostgreSQL runs here (SQLite: the work is the sender's own)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            name, fields = _stat(entry)
            if name == "postgres":
                total += sum(int(value) for value in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def kb(path: str, field: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Memory:
    """Peak PSS of the whole tree, peak RSS of each process, from now on: the
    kernel's high-water mark (VmHWM) of the processes already running is reset
    first (``clear_refs``), so a serve that hashed an editor's password with
    Argon2's 64 MiB at login is measured for the send, not for the login.
    The RSS peaks are the kernel's, exact; the PSS is sampled ``every``
    seconds: a sample reads each process's ``smaps_rollup`` (0.75 ms a
    process here), and at twenty a second that took 7 % of a core from the
    sender being measured (smtp-source, the reference, is not sampled)."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        for running in tree(pid):
            try:
                Path(f"/proc/{running}/clear_refs").write_text("5")
            except OSError:  # not ours to reset: its peak stays since its start
                pass
        self.pid, self.every = pid, every
        self.peak_pss = 0
        self.rss: dict[int, int] = {}
        self.processes: set[int] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.is_set():
            pss = 0
            for pid in tree(self.pid):
                self.processes.add(pid)
                pss += kb(f"/proc/{pid}/smaps_rollup", "Pss")
                self.rss[pid] = max(self.rss.get(pid, 0), kb(f"/proc/{pid}/status", "VmHWM"))
            self.peak_pss = max(self.peak_pss, pss)
            self.done.wait(self.every)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def drain(fd: int, output: list) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        output.append(chunk)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
