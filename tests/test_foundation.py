"""The foundation: settings validation, migrations without drift, health, SMTP."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from newsletter import db
from newsletter.app import create_app
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports import check_dsn, make_transport
from newsletter.mail_encoding import HeaderInjectionError


def test_production_refuses_missing_secret_and_plain_http(tmp_path):
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        load_settings(environ={"NEWSLETTER_ENV": "production", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match="https"):
        load_settings(
            environ={
                "NEWSLETTER_ENV": "production",
                "NEWSLETTER_SECRET_KEY": "k" * 40,
                "NEWSLETTER_BASE_URL": "http://news.example.org",
                "NEWSLETTER_INSTANCE_PATH": str(tmp_path),
            }
        )


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("NEWSLETTER_SCHEDULE", "every monday", "cron"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "IANA"),
        ("NEWSLETTER_SEND_RATE", "fast", "number"),
        ("NEWSLETTER_AUTO_SEND", "perhaps", "true or false"),
        ("NEWSLETTER_MAIL_FROM", "nobody", "Name <address>"),
        ("NEWSLETTER_CLICK_COUNTS", "everything", "aggregate"),
        ("NEWSLETTER_SUBSCRIBE_RATE_LIMIT", "lots", "rate limit"),
        ("NEWSLETTER_API_RATE_LIMIT", "10 per fortnight", "rate limit"),
    ],
)
def test_malformed_settings_name_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(environ={name: value, "NEWSLETTER_INSTANCE_PATH": str(tmp_path)})
    assert name.removeprefix("NEWSLETTER_") in str(info.value) or message in str(info.value)


def test_the_defaults_that_validate_skips_pass_their_parsers():
    """``config.validate`` parses the schedule and the rate limits only when an
    operator set them (so a send does not import APScheduler and limits): the
    defaults must therefore be what those parsers accept."""
    from apscheduler.triggers.cron import CronTrigger
    from limits import parse_many

    assert CronTrigger.from_crontab(Settings.schedule, timezone="UTC").fields
    assert parse_many(Settings.subscribe_rate_limit) and parse_many(Settings.api_rate_limit)


def test_an_unknown_transport_names_the_variable(tmp_path):
    """The provider rules of a DSN live in its transport module, so the app
    factory (``check_settings``) is where an unknown transport stops the start."""
    with pytest.raises(ConfigError, match="unknown transport") as info:
        create_app(
            load_settings(
                environ={"NEWSLETTER_TRANSPORT": "pigeon://coop", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
            )
        )
    assert "TRANSPORT" in str(info.value)


def test_development_defaults_generate_a_persistent_secret(tmp_path):
    first = load_settings(environ={"NEWSLETTER_INSTANCE_PATH": str(tmp_path)})
    second = load_settings(environ={"NEWSLETTER_INSTANCE_PATH": str(tmp_path)})
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert first.database_url.startswith("sqlite:///")
    assert first.transport == "outbox://"


def test_migrations_match_models_without_drift(fresh_database_url):
    db.upgrade(fresh_database_url)
    engine = db.make_engine(fresh_database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def test_healthz_reports_database(client, database_url):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}
    engine = create_engine(database_url)
    assert "subscriber" in inspect(engine).get_table_names()
    engine.dispose()


def test_security_headers_on_pages(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_dsn_parsing():
    dsn = check_dsn("smtp://user:p%40ss@mail.example.org:587?tls=starttls")
    assert (dsn.host, dsn.port, dsn.user, dsn.password, dsn.options["tls"]) == (
        "mail.example.org",
        587,
        "user",
        "p@ss",
        "starttls",
    )
    with pytest.raises(ValueError, match="API key"):
        check_dsn("postmark://@default")


def test_smtp_transport_delivers_to_a_real_server_with_auth(smtp_server):
    smtp_server.auth = None
    transport = make_transport(smtp_server.dsn)
    message = OutgoingMessage(
        sender="GET THE SIGNAL <signal@example.org>",
        to="zoë@example.org",
        to_name="Zoë Ångström",
        subject="Grüße — welcome",
        text="plain body",
        html="<p>html body</p>",
    )
    [result] = transport.send([message])
    transport.close()
    assert result.ok, result.error
    [received] = smtp_server.wait_for(1)
    parsed = received.message
    assert parsed["Subject"] == "Grüße — welcome"
    assert parsed["To"].addresses[0].display_name == "Zoë Ångström"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


def test_smtp_transport_reports_refused_recipients(smtp_server):
    smtp_server.respond = lambda rcpt: (
        "550 5.1.1 no such user"
        if rcpt.startswith("gone")
        else ("451 4.7.1 try later" if rcpt.startswith("slow") else None)
    )
    transport = make_transport(smtp_server.dsn)
    messages = [
        OutgoingMessage(sender="S <s@example.org>", to=f"{who}@example.org", subject="x", text="x")
        for who in ("gone", "slow", "fine")
    ]
    results = transport.send(messages)
    transport.close()
    assert [r.status for r in results] == ["permanent", "transient", "sent"]
    assert results[0].error.startswith("550")
    assert [m.to for m in smtp_server.wait_for(1)] == ["fine@example.org"]


@pytest.mark.parametrize("field", ["subject", "to_name"])
def test_header_injection_is_refused(field):
    values = dict(sender="S <s@example.org>", to="a@example.org", subject="hello", text="x")
    values[field] = "hello\r\nBcc: victim@example.org"
    with pytest.raises(HeaderInjectionError):
        OutgoingMessage(**values).as_bytes()
