"""``newsletter subscribers import FILE.csv [--pending]`` and ``newsletter subscribers export``."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.db import session_scope
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.readers.csv_io import ImportFormatError, export_csv, import_csv


@click.command("import")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--pending",
    is_flag=True,
    help="Send each new reader a confirmation email (double opt-in) instead of importing them active.",
)
def import_command(file: str, pending: bool):
    """Import readers from a CSV file with a header row: email,name,topics
    (topics separated by ; or |). Invalid lines are reported with their line
    numbers; valid lines are kept. Exits 1 when any line was rejected."""

    settings = current_app.extensions["signal_settings"]
    try:
        with click.open_file(file, "rb") as stream:
            report = import_csv(settings, stream, pending=pending)
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    except ImportFormatError as exc:
        click.echo(f"error: {file}: {exc}", err=True)
        sys.exit(2)
    for line_no, reason in report.rejected:
        click.echo(f"{file}:{line_no}: {reason}", err=True)
    if report.rejected_total > len(report.rejected):
        click.echo(f"… and {report.rejected_total - len(report.rejected)} more rejected lines", err=True)
    state = "pending (confirmation sent)" if pending else "active"
    click.echo(
        f"imported {report.imported} ({state}), updated {report.updated}, rejected {report.rejected_total}"
    )
    if report.rejected_total:
        sys.exit(1)


@click.command("export")
@with_appcontext
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), help="Only readers with this status.")
def export_command(status: str | None):
    """Write all readers as CSV to stdout (with a status column)."""

    with session_scope() as session:
        export_csv(session, sys.stdout, status=status)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    groups["subscribers"].add_command(import_command)
    groups["subscribers"].add_command(export_command)
