"""Shared setup of the sending benchmarks: a migrated database (a fresh
SQLite file, or a fresh database on the PostgreSQL server you name), a real
issue (articles in two sections, rendered by MJML when frozen), N readers
created in the database with one INSERT … SELECT, and Postfix's smtp-sink."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_database(postgres: str = "") -> tuple[str, Path]:
    """A fresh migrated database URL and a work directory."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter import db

    work = Path(tempfile.mkdtemp(prefix="signal-bench-"))
    if postgres:
        name = f"signal_bench_{uuid.uuid4().hex[:8]}"
        admin_url = make_url(postgres).set(drivername="postgresql+psycopg")
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = admin_url.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'bench.db'}"
    db.upgrade(url)
    db.init_engine(url)
    return url, work


def drop_database(url: str) -> None:
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
    """Postfix's smtp-sink on a loopback port (accepts and discards)."""

    def __init__(self, backlog: int = 512):
        if not Path(SMTP_SINK).exists():
            raise SystemExit("Postfix's smtp-sink is missing: apt-get install postfix")
        self.port = free_port()
        command = [SMTP_SINK]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        command += [f"127.0.0.1:{self.port}", str(backlog)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def dsn(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(5)


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


def cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


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


@contextmanager
def serving(command: list[str], work: Path, env: dict, port: int) -> Iterator[str]:
    """Run a web server ``command`` listening on ``port``; yield its base URL
    once ``/healthz`` answers, and stop it at the end. Its output goes to a
    log that is shown if it never answers."""
    import requests

    log = work / "serve.log"
    server = subprocess.Popen(command, cwd=work, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
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


def serve_command(port: int, *args: str) -> list[str]:
    """`newsletter serve` (waitress, as a user runs it) on ``port``."""
    return [sys.executable, "-m", "newsletter", "serve", "--port", str(port), *args]
