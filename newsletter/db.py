"""Engine and sessions.

One engine per process, created from the configured URL. SQLite gets WAL,
foreign keys and a busy timeout so the web app, the scheduler and the sender
threads can share the embedded database; PostgreSQL needs nothing special.

Alembic (with Mako and Pygments behind it: a quarter of a second) is
imported when a migration function runs, not with this module: every
process opens the database, few migrate it, and `issue send` and its
sending processes must start quickly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import event, func, or_
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from newsletter.paths import MIGRATIONS

if TYPE_CHECKING:
    from alembic.config import Config

_engine: Engine | None = None


def is_sqlite(engine: Engine | None = None) -> bool:
    return (engine or get_engine()).dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine with the settings this project relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def init_engine(url: str) -> Engine:
    """Set the process-wide engine (called by the app factory and the CLI)."""
    global _engine
    if _engine is not None and _engine.url.render_as_string(hide_password=False) == make_url(
        url
    ).render_as_string(hide_password=False):
        return _engine
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url)
    return _engine


def get_engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database engine not initialised: call newsletter.db.init_engine(url) first")
    return _engine


def dispose_engine() -> None:
    global _engine
    if _engine is not None:
        _engine.dispose()
        _engine = None


def release_pooled_memory() -> None:
    """Give back the memory the idle pooled connections hold (SQLite's page
    cache grows to a few MB in a fan-out). SQLite's are kept open and shrink
    their caches (``PRAGMA shrink_memory``): closing the last one checkpoints
    and deletes the write-ahead log, 25–35 ms on the benchmark machine that
    ``issue send`` would spend before its first message. Other databases'
    connections are closed; the next query opens a new one."""
    engine = get_engine()
    if not is_sqlite(engine):
        engine.dispose()
        return
    checkedin = getattr(engine.pool, "checkedin", None)
    idle = [engine.raw_connection() for _ in range(checkedin() if checkedin else 1)]
    for connection in idle:
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA shrink_memory")
            cursor.close()
        finally:
            connection.close()  # back to the pool, still open


MAX_INTEGER = 2**31 - 1  # INTEGER columns (ids, issue numbers) on PostgreSQL; SQLite is wider


def parse_integer(raw) -> int | None:
    """A number typed by someone else (a URL, a form) as a value the
    INTEGER columns can hold: ASCII digits, 0 to MAX_INTEGER; else None.
    Bigger numbers overflow PostgreSQL and SQLite alike (an error, not a miss)."""
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if not raw or len(raw) > 10 or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= MAX_INTEGER else None


def contains_any(text: str, *columns):
    """``lower(column) LIKE %text%`` for any of ``columns``, case-insensitive,
    with the user's own % and _ matched literally (the workspace's searches)."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(*(func.lower(column).like(f"%{escaped}%", escape="\\") for column in columns))


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error, always close."""
    session = Session(get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations (used by `db upgrade`, `serve`, `demo` and tests)."""
    importlib.import_module("alembic.command").upgrade(alembic_config(url), revision)


def revisions() -> tuple[set[str], set[str]]:
    """(the revisions the database is at, the newest ones the code has): equal
    when the database is migrated."""
    with get_engine().connect() as connection:
        context = importlib.import_module("alembic.runtime.migration").MigrationContext
        current = set(context.configure(connection).get_current_heads())
    scripts = importlib.import_module("alembic.script").ScriptDirectory
    return current, set(scripts.from_config(alembic_config()).get_heads())


def alembic_config(url: str | None = None) -> Config:
    cfg = importlib.import_module("alembic.config").Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url", (url or get_engine().url.render_as_string(hide_password=False)).replace("%", "%%")
    )
    return cfg
