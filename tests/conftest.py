"""Shared fixtures: a migrated database per test (SQLite by default, the
local PostgreSQL when NEWSLETTER_TEST_DATABASE_URL is set), the app, a real
SMTP server (aiosmtpd), a live HTTP server and headless Chromium.

With NEWSLETTER_REQUIRE_ALL=1 (set by CI) a test that would be skipped for
a missing browser, database or service fails instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from newsletter import clock, db
from newsletter.config import load_settings
from tests.helpers import LoopbackServer, SmtpSink, free_port, require, start_peers

# The areas' fixture modules, registered once for every test: a test module
# asks for their fixtures by argument and imports only the plain helpers it calls.
pytest_plugins = [
    "tests.content_fixtures",
    "tests.delivery_fixtures",
    "tests.editor_fixtures",
    "tests.feedback_fixtures",
    "tests.readers_fixtures",
]

TEST_DB_URL = os.environ.get("NEWSLETTER_TEST_DATABASE_URL", "")
SECRET = "test-secret-key-" + "x" * 40


# --- database -----------------------------------------------------------------


def _pg_admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_pg_database(base_url: str, name: str) -> str:
    admin = create_engine(_pg_admin_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(_pg_admin_url(base_url)).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(base_url: str, name: str) -> None:
    admin = create_engine(_pg_admin_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_empty_statements(url: str) -> str:
    """What TRUNCATE … RESTART IDENTITY CASCADE of the models' tables did, in
    one round trip: every row deleted (children before parents, so no foreign
    key is in the way) and the sequences those tables own restarted. DELETE of
    the few rows a test leaves takes about 3 ms; TRUNCATE of the 25 tables took
    about 60 ms (new files for every table), before each of some 900 tests."""
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    engine = create_engine(url)
    with engine.connect() as conn:
        sequences = conn.execute(
            text(
                "SELECT DISTINCT quote_ident(s.relname) FROM pg_class s"
                " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
                " JOIN pg_class t ON d.refobjid = t.oid"
                " WHERE s.relkind = 'S' AND d.deptype IN ('a', 'i') AND t.relname = ANY(:tables)"
            ),
            {"tables": tables},
        ).scalars()
        restart = [f"ALTER SEQUENCE {name} RESTART;" for name in sorted(sequences)]
    engine.dispose()
    return "".join(f'DELETE FROM "{name}";' for name in reversed(tables)) + "".join(restart)


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Migrate once per session: a template SQLite file, or a PostgreSQL database."""
    if TEST_DB_URL:
        name = f"signal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        url = create_pg_database(TEST_DB_URL, name)
        db.upgrade(url)
        yield {"kind": "postgresql", "url": url, "empty": _pg_empty_statements(url)}
        db.dispose_engine()
        drop_pg_database(TEST_DB_URL, name)
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite:///{path}"
        db.upgrade(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        engine.dispose()
        yield {"kind": "sqlite", "path": path}


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    """A clean, migrated database for one test."""
    db.dispose_engine()
    if database_template["kind"] == "postgresql":
        url = database_template["url"]
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(database_template["empty"])
        engine.dispose()
        return url
    path = tmp_path / "newsletter.db"
    shutil.copy(database_template["path"], path)
    return f"sqlite:///{path}"


@pytest.fixture
def fresh_database_url(tmp_path):
    """An empty database (no migrations applied), for migration tests."""
    if TEST_DB_URL:
        name = f"signal_fresh_{uuid.uuid4().hex[:8]}"
        yield create_pg_database(TEST_DB_URL, name)
        db.dispose_engine()
        drop_pg_database(TEST_DB_URL, name)
    else:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"


# --- app ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset_clock():
    yield
    clock.reset()


@pytest.fixture
def make_settings(database_url, tmp_path):
    """Settings for a test; keyword arguments override fields."""

    def build(**overrides):
        values = dict(
            env="testing",
            database_url=database_url,
            secret_key=SECRET,
            base_url="http://localhost",
            transport="outbox://",
            instance_path=str(tmp_path / "instance"),
            mail_from="GET THE SIGNAL <signal@example.org>",
            api_tokens=("test-token",),
        )
        values.update(overrides)
        return load_settings(environ={}, **values)

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def make_app(make_settings):
    from newsletter.app import create_app

    def build(**overrides):
        app = create_app(make_settings(**overrides))
        return app

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def csrf_off_app(make_app):
    """The app with CSRF checks off, for tests that are about something else."""
    app = make_app()
    app.config["WTF_CSRF_ENABLED"] = False
    return app


# --- real peers ----------------------------------------------------------------


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


class LiveServer(LoopbackServer):
    """The app under werkzeug's threaded server on ``port``, with the
    transactional mail sender running beside it, as in ``serve``."""

    def __init__(self, app, port):
        from werkzeug.serving import make_server

        from newsletter.delivery.mailqueue import MailSender

        self.app = app
        self.mail = MailSender(app.extensions["signal_settings"], poll=0.05).start()
        super().__init__(make_server("127.0.0.1", port, app, threaded=True))

    def stop(self) -> None:
        super().stop()
        self.mail.shutdown()


@pytest.fixture
def live_server_factory():
    """Start the app on a free port; the app's base_url is that server's URL,
    so links in emails lead back to it."""

    def start(make_app, **overrides):
        port = free_port()
        return LiveServer(make_app(base_url=f"http://127.0.0.1:{port}", **overrides), port)

    yield from start_peers(start)


CHROMIUM = os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot():
    """Save a screenshot under screenshots/ (looked at by a person; kept out of git)."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
