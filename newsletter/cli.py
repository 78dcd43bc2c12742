"""The ``newsletter`` command (also ``flask --app wsgi …``).

This module only wires groups together; each capability keeps its commands
next to its services in a ``commands.py`` with a ``register(groups)``
function, so the CLI stays a thin face over the same service functions the
web views and the API call.
"""

from __future__ import annotations

import importlib
import os
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup

from newsletter.config import ConfigError

COMMAND_MODULES = (
    "newsletter.readers.commands",
    "newsletter.content.commands",
    "newsletter.issues.commands",
    "newsletter.delivery.commands",
    "newsletter.editor.commands",
    "newsletter.feedback.commands",
    "newsletter.scheduler",
)


def register_commands(app: Flask) -> None:
    groups = {
        "db": AppGroup("db", help="Database schema (Alembic)."),
        "editor": AppGroup("editor", help="Editor accounts."),
        "articles": AppGroup("articles", help="Articles in: JSON files and RSS/Atom feeds."),
        "subscribers": AppGroup("subscribers", help="Import and export readers."),
        "issue": AppGroup("issue", help="Assemble, preview, send and follow an issue."),
    }
    groups["db"].add_command(db_upgrade)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(groups)
    for group in groups.values():
        app.cli.add_command(group)
    app.cli.add_command(serve)
    app.cli.add_command(demo)


@click.command("upgrade")
def db_upgrade():
    """Apply all migrations to NEWSLETTER_DATABASE_URL."""
    from newsletter import db

    db.upgrade()
    click.echo("database is at the newest revision")


def _serve(app: Flask, host: str, port: int, threads: int) -> None:
    """Web + scheduler + sender in one process, under waitress (a production
    WSGI server that runs everywhere Python does)."""
    from waitress import serve as waitress_serve

    from newsletter import db, scheduler
    from newsletter.delivery import runner

    db.upgrade()
    runner.start_in_process(app)
    scheduler.start_in_process(app)
    settings = app.extensions["signal_settings"]
    click.echo(f"GET THE SIGNAL on http://{host}:{port}  (public URL {settings.base_url}, transport {settings.transport})")
    waitress_serve(app, host=host, port=port, threads=threads, ident="get-the-signal")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int):
    """Run the web app, the scheduler and the sender in one process."""
    _serve(current_app._get_current_object(), host, port, threads)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo(host: str, port: int):
    """Serve with sample articles, an editor account and the outbox transport."""
    from newsletter import db
    from newsletter.demo import seed_demo

    app = current_app._get_current_object()
    db.upgrade()
    for line in seed_demo(app.extensions["signal_settings"]):
        click.echo(line)
    _serve(app, host, port, threads=8)


def _create_app_for_cli() -> Flask:
    from newsletter.app import create_app
    from newsletter.config import load_settings

    overrides = {}
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        # The demo always runs on the embedded defaults a newcomer expects.
        overrides = {"transport": os.environ.get("NEWSLETTER_TRANSPORT", "outbox://")}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    return create_app(settings)


@click.group(cls=FlaskGroup, create_app=_create_app_for_cli, add_default_commands=False, add_version_option=False)
def cli():
    """GET THE SIGNAL — AI agent intel, delivered weekly."""


def main() -> None:
    os.environ.setdefault("FLASK_RUN_FROM_CLI", "false")
    cli(prog_name="newsletter")
