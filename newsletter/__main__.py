"""The ``newsletter`` command (also ``python -m newsletter`` and ``flask --app wsgi …``).

The entry point builds the app (``app.create_app``), whose factory adds
every command (``cli.register_commands``); a configuration error stops it
with exit code 2 and a message that names the variable.

``newsletter issue send`` is the exception: the send a user waits for runs
``delivery.send_cli.standalone`` without building the web app, so the first
message leaves sooner (importing the views, the editor and Flask's
extensions costs about half a second) and the sending processes it forks
carry none of it. The app module is therefore imported by name
(``importlib``), only when another command needs it.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from contextlib import contextmanager

APP_MODULE = "newsletter.app"


@contextmanager
def collector_paused():
    """Import without the cyclic garbage collector, then keep what was
    imported out of its reach. Importing the send path (SQLAlchemy, SQLModel,
    the table classes) makes some 140,000 objects and almost no garbage, yet
    the collector would walk them about two hundred times meanwhile: a tenth
    of the imports' time, 40-60 ms before the first message. Frozen
    (``gc.freeze``), modules and classes that live until the process ends
    are not walked again by later collections, nor their pages copied into
    the sending processes a send forks."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _create_app_for_cli():
    import click

    from newsletter.config import ConfigError, load_settings

    overrides = {}
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        # The demo always runs on the embedded defaults a newcomer expects.
        overrides = {"transport": os.environ.get("NEWSLETTER_TRANSPORT", "outbox://")}
    try:
        with collector_paused():
            app_module = importlib.import_module(APP_MODULE)
        return app_module.create_app(load_settings(**overrides))
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def app_cli():
    """The command group of every command but ``issue send``: Flask's, with the
    app built on demand (Flask and click are imported here, not for a send)."""
    import click
    from flask.cli import FlaskGroup

    from newsletter import DISTRIBUTION

    @click.group(
        cls=FlaskGroup, create_app=_create_app_for_cli, add_default_commands=False, add_version_option=False
    )
    @click.version_option(package_name=DISTRIBUTION, prog_name="newsletter", message="%(prog)s %(version)s")
    def cli():
        """GET THE SIGNAL — AI agent intel, delivered weekly."""

    return cli


def main() -> None:
    if sys.argv[1:3] == ["issue", "send"]:
        with collector_paused():
            from newsletter.delivery import send_cli

        send_cli.standalone(args=sys.argv[3:], prog_name="newsletter issue send")
        return
    os.environ.setdefault("FLASK_RUN_FROM_CLI", "false")
    app_cli()(prog_name="newsletter")


if __name__ == "__main__":
    main()
