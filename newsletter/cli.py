"""The ``newsletter`` command's groups and its top-level commands
(``serve``, ``demo``, ``db upgrade``); the entry point is ``newsletter.__main__``.

This module only wires groups together; each capability keeps its commands
next to its services in a ``commands.py`` with a ``register(groups)``
function, so the CLI stays a thin face over the same service functions the
web views and the API call.
"""

from __future__ import annotations

import signal
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from waitress import serve as waitress_serve

from newsletter import db, scheduler
from newsletter.access import commands as access_commands
from newsletter.config import served_at
from newsletter.content import commands as content_commands
from newsletter.delivery import commands as delivery_commands
from newsletter.delivery import mail_commands, runner
from newsletter.demo import seed_demo
from newsletter.doctor import commands as doctor_commands
from newsletter.editor import commands as editor_commands
from newsletter.extensions import SETTINGS_KEY, settings
from newsletter.feedback import commands as feedback_commands
from newsletter.issues import commands as issues_commands
from newsletter.readers import commands as readers_commands

COMMAND_MODULES = (
    readers_commands,
    content_commands,
    issues_commands,
    delivery_commands,
    mail_commands,
    editor_commands,
    feedback_commands,
    doctor_commands,
    access_commands,
    scheduler,
)


def register_commands(app: Flask) -> None:
    groups = {
        "db": AppGroup("db", help="Database schema (Alembic)."),
        "editor": AppGroup("editor", help="Editor accounts."),
        "articles": AppGroup(
            "articles", help="Articles: import (JSON files, RSS/Atom feeds), list, hold back."
        ),
        "sections": AppGroup(
            "sections", help="The newsletter's sections: which tags, in which order, named how."
        ),
        "subscribers": AppGroup("subscribers", help="Readers: add, remove, list, import, export, suppress."),
        "issue": AppGroup("issue", help="Assemble, preview, approve, schedule, send and follow an issue."),
        "mail": AppGroup("mail", help="The transactional mail queue: confirmations, welcomes, notices."),
    }
    groups["db"].add_command(db_upgrade)
    for module in COMMAND_MODULES:
        module.register(groups)
    for group in groups.values():
        app.cli.add_command(group)
    app.cli.add_command(serve)
    app.cli.add_command(demo)


@click.command("upgrade")
@with_appcontext
def db_upgrade():
    """Apply all migrations to NEWSLETTER_DATABASE_URL."""
    db.upgrade()
    click.echo("database is at the newest revision")


def _listen_at(app: Flask, host: str, port: int) -> None:
    """In development, an unset base URL follows the address served (``config.served_at``)."""
    app.extensions[SETTINGS_KEY] = served_at(app.extensions[SETTINGS_KEY], host, port)


def _serve(app: Flask, host: str, port: int, threads: int) -> None:
    """Web + scheduler + sender in one process, under waitress (a production
    WSGI server that runs everywhere Python does)."""
    _listen_at(app, host, port)
    db.upgrade()
    app_settings = settings()
    runner.start_in_process(app_settings)
    scheduler.start_in_process(app)
    click.echo(
        f"GET THE SIGNAL on http://{host}:{port}  (public URL {app_settings.base_url}, transport {app_settings.transport})"
    )
    signal.signal(signal.SIGTERM, _stop_serving)
    waitress_serve(app, host=host, port=port, threads=threads, ident="get-the-signal")


def _stop_serving(_signum, _frame) -> None:
    """SIGTERM (systemd's stop, ``docker stop``) ends ``serve`` as Ctrl-C
    does, through ``SystemExit``, so its exit handlers run: the sender
    finishes and records the batch on the wire, and the scheduler lock is
    released at once — a restarted or standing-by scheduler takes over
    without waiting for the lease to run out."""
    sys.exit(0)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_appcontext
def serve(host: str, port: int, threads: int):
    """Run the web app, the scheduler and the sender in one process."""
    _serve(current_app._get_current_object(), host, port, threads)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def demo(host: str, port: int):
    """Serve with sample articles, an editor account and the outbox transport."""
    _listen_at(current_app._get_current_object(), host, port)  # before the login is printed
    db.upgrade()
    for line in seed_demo(settings()):
        click.echo(line)
    _serve(current_app._get_current_object(), host, port, threads=8)
