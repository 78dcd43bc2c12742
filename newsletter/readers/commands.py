"""``newsletter subscribers import FILE [--from SERVICE] [--dry-run] [--encoding NAME] [--pending] [--update]``
and ``newsletter subscribers export``."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.db import session_scope
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.readers.csv_io import ImportFormatError, ImportReport, export_csv, import_csv
from newsletter.readers.import_formats import SOURCE_NAMES

SHOWN_CHANGES = 50


class _Progress:
    """Progress of a large file on stderr: one line each time another tenth
    of it is read (or every 100,000 rows when its size is unknown)."""

    def __init__(self):
        self.started = time.monotonic()
        self.last: tuple[str, int] = ("", -1)

    def __call__(self, table, rows: int) -> None:
        if table.size:
            step = table.bytes_read * 10 // table.size
            label = f"{min(table.bytes_read, table.size) / 1e6:,.1f} of {table.size / 1e6:,.1f} MB"
        else:
            step, label = rows // 100_000, ""
        if (table.name, step) == self.last or (table.size or 0) < 1_000_000 and rows < 100_000:
            return
        self.last = (table.name, step)
        rate = rows / max(0.001, time.monotonic() - self.started)
        click.echo(f"{table.name}: {rows:,} rows read {label} ({rate:,.0f} rows/s)", err=True)


def print_report(report: ImportReport, file: str) -> None:
    for read in report.files:
        click.echo(
            f"{read.name}: read as a {read.layout} export, {read.encoding}, {read.delimiter}-separated, {read.rows:,} rows"
        )
    click.echo("Dry run: nothing was written. The import would do this:" if report.dry_run else "Imported:")
    width = max(len(label) for _, label, _ in report.summary)
    for _, label, count in report.summary:
        click.echo(f"  {label:<{width}}  {count:>9,}")
    if report.changes:
        click.echo(
            "Changes to readers we have:"
            if not report.dry_run
            else "Changes it would make to readers we have:"
        )
        for where, address, what in report.changes[:SHOWN_CHANGES]:
            click.echo(f"  {where} {address}: {what}")
        if report.changes_total > SHOWN_CHANGES:
            click.echo(f"  … and {report.changes_total - SHOWN_CHANGES:,} more")
    if report.counts["kept"]:
        click.echo("Readers' own names and topics were kept; --update lets the file change them.")
    if report.unmatched_tags:
        shown = ", ".join(f"{tag} ({count})" for tag, count in report.unmatched_tags.most_common(10))
        click.echo(f"Tags that match no section (ignored): {shown}")


@click.command("import")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--from",
    "source",
    type=click.Choice(SOURCE_NAMES, case_sensitive=False),
    help="The service that wrote the file (recognised by its header when left out).",
)
@click.option("--dry-run", is_flag=True, help="Write nothing; print what the import would do, per status.")
@click.option(
    "--encoding", metavar="NAME", help="The file's encoding when it is not detected (e.g. windows-1252)."
)
@click.option(
    "--pending",
    is_flag=True,
    help="Send each new reader a confirmation email (double opt-in) instead of importing them active.",
)
@click.option(
    "--update", is_flag=True, help="Let the file change the names and topics readers chose themselves."
)
def import_command(
    file: str, source: str | None, dry_run: bool, encoding: str | None, pending: bool, update: bool
):
    """Import readers from a CSV file (or a ZIP of them): an export of
    Mailchimp, Substack, Ghost, listmonk, Buttondown, Kit, beehiiv, MailerLite
    or this newsletter, or any CSV with an email column (and name, topics).
    Readers who had unsubscribed, bounced, complained or were blocklisted
    there are kept from being mailed. Invalid lines are reported with their
    line numbers; valid lines are kept. Exits 1 when any line was rejected
    or refused, 2 when the file cannot be read."""

    settings = current_app.extensions["signal_settings"]
    try:
        with click.open_file(file, "rb") as stream:
            report = import_csv(
                settings,
                stream,
                pending=pending,
                update=update,
                dry_run=dry_run,
                from_service=source,
                encoding=encoding,
                name=file,
                progress=_Progress(),
            )
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    except ImportFormatError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line_no, reason in report.rejected:
        click.echo(f"{file}:{line_no}: {reason}", err=True)
    if report.rejected_total > len(report.rejected):
        click.echo(f"… and {report.rejected_total - len(report.rejected)} more rejected lines", err=True)
    print_report(report, file)
    state = "pending (confirmation sent)" if pending else "active"
    click.echo(
        f"{'would import' if dry_run else 'imported'} {report.imported} ({state}), "
        f"updated {report.updated}, rejected {report.rejected_total}"
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
