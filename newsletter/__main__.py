"""The ``newsletter`` command (also ``python -m newsletter`` and ``flask --app wsgi …``).

The entry point builds the app (``app.create_app``), whose factory adds
every command (``cli.register_commands``); a configuration error stops it
with exit code 2 and a message that names the variable.
"""

from __future__ import annotations

import os
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from newsletter import DISTRIBUTION
from newsletter.app import create_app
from newsletter.config import ConfigError, load_settings


def _create_app_for_cli() -> Flask:
    overrides = {}
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        # The demo always runs on the embedded defaults a newcomer expects.
        overrides = {"transport": os.environ.get("NEWSLETTER_TRANSPORT", "outbox://")}
    try:
        return create_app(load_settings(**overrides))
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


@click.group(
    cls=FlaskGroup, create_app=_create_app_for_cli, add_default_commands=False, add_version_option=False
)
@click.version_option(package_name=DISTRIBUTION, prog_name="newsletter", message="%(prog)s %(version)s")
def cli():
    """GET THE SIGNAL — AI agent intel, delivered weekly."""


def main() -> None:
    os.environ.setdefault("FLASK_RUN_FROM_CLI", "false")
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
