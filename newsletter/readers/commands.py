"""``newsletter subscribers import|export|add|remove|list``: thin faces over
``readers.service`` and ``readers.csv_io`` (the functions the form, the API
and the editor call). ``import FILE [--from SERVICE] [--dry-run]
[--encoding NAME] [--pending] [--update]`` reads other services' exports too.
Exit codes of add, remove and list as in ``newsletter.terminal``."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.addresses import InvalidInput
from newsletter.db import session_scope
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.readers import service, signups
from newsletter.readers.csv_io import ImportFormatError, ImportReport, export_csv, import_csv
from newsletter.readers.import_formats import SOURCE_NAMES
from newsletter.terminal import emit_columns, emit_json, emit_json_rows, fail

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


ADD_RESULTS = {
    "created": "added",
    "resent": "added; confirmation mail queued",
    "updated": "updated",
    "already_active": "already subscribed",
    "capped": "pending; no new confirmation mail today (daily limit)",
    "suppressed": "refused: the address is on the suppression list (`subscribers unsuppress` first)",
    "kept_unsubscribed": "refused: the reader left, and only the reader can come back",
}


def _reader_json(reader) -> dict:
    return {
        "id": reader.id,
        "email": reader.email,
        "name": reader.name,
        "status": reader.status,
        "topics": reader.topic_list,
        "created_at": reader.created_at,
        "confirmed_at": reader.confirmed_at,
        "unsubscribed_at": reader.unsubscribed_at,
        "consent_source": reader.consent_source,
    }


@click.command("add")
@with_appcontext
@click.argument("email")
@click.option("--name", default="", help="The reader's name.")
@click.option(
    "--topics", default="", metavar="SLUGS", help="Comma-separated section slugs (none: everything)."
)
@click.option(
    "--pending", is_flag=True, help="Send a confirmation mail (double opt-in) instead of adding them active."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add_command(email, name, topics, pending, as_json):
    """Add a reader, active at once (you collected their consent), or pending with --pending."""
    settings = current_app.extensions["signal_settings"]
    try:
        outcome = service.subscribe(
            settings,
            email=email,
            name=name,
            topics=topics,
            source="editor",
            consent_text=service.CONSENT_TEXT if pending else service.OPERATOR_CONSENT,
            double_opt_in=pending,
        )
    except InvalidInput as exc:
        fail(str(exc))
    if pending and outcome.result == "created":
        outcome.result = "resent"  # created pending, with its confirmation mail queued
    message = ADD_RESULTS.get(outcome.result, outcome.result)
    refused = outcome.result in ("suppressed", "kept_unsubscribed")
    if as_json:
        emit_json(
            {
                "email": outcome.email,
                "id": outcome.subscriber_id,
                "result": outcome.result,
                "message": message,
            }
        )
    else:
        click.echo(f"{outcome.email}: {message}", err=refused)
    if refused:
        sys.exit(1)


@click.command("remove")
@with_appcontext
@click.argument("email")
@click.option(
    "--erase",
    is_flag=True,
    help="Delete everything about the reader instead (keeps only a hash on the suppression list).",
)
@click.option("--yes", is_flag=True, help="Do not ask before erasing.")
def remove_command(email, erase, yes):
    """Unsubscribe a reader (their record stays; only they can come back), or --erase them."""
    settings = current_app.extensions["signal_settings"]
    if erase and not yes:
        click.confirm(f"Erase {email} and everything about them? This cannot be undone", abort=True)
    try:
        with session_scope() as session:
            reader = service.find_reader(session, settings, email)
            if reader is None:
                fail(f"no reader with the address {email}")
            address = reader.email
            if erase:
                service.erase(session, reader)
                changed = True
            else:
                changed = service.unsubscribe(session, reader, "cli")
                status = reader.status
    except InvalidInput as exc:
        fail(str(exc))
    if erase:
        click.echo(f"{address}: erased (the address is suppressed, as a hash)")
    else:
        click.echo(f"{address}: {'unsubscribed' if changed else f'already {status}'}")


@click.command("list")
@with_appcontext
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), help="Only readers with this status.")
@click.option(
    "--search", default="", metavar="TEXT", help="Only readers whose address or name contains TEXT."
)
@click.option("--limit", type=click.IntRange(1), help="At most this many (default: all, streamed).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (streamed).")
def list_command(status, search, limit, as_json):
    """Readers, oldest first: id, status, address, name, topics."""
    with session_scope() as session:
        readers = service.iter_readers(session, status=status, search=search, limit=limit)
        if as_json:
            emit_json_rows(_reader_json(r) for r in readers)
            return
        rows = ((r.id, r.status, r.email, r.topics or "(all)", r.name) for r in readers)
        if not emit_columns(rows, ("ID", "STATUS", "EMAIL", "TOPICS", "NAME"), (8, 12, 36, 20)):
            click.echo("no readers match", err=True)


@click.command("sources")
@with_appcontext
@click.option(
    "--days", type=click.IntRange(1, 3660), default=30, show_default=True, help="Over this many days."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sources_command(days, as_json):
    """Sign-ups through the embedded box, per site and page that showed it (counts only)."""
    counts = signups.by_source(days)
    if as_json:
        emit_json({"days": days, "sources": [{"source": s, "signups": n} for s, n in counts]})
        return
    if not emit_columns(counts, ("SOURCE", "SIGN-UPS"), (60,)):
        click.echo(f"no sign-ups through the box in the last {days} days", err=True)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (
        import_command,
        export_command,
        add_command,
        remove_command,
        list_command,
        sources_command,
    ):
        groups["subscribers"].add_command(command)
