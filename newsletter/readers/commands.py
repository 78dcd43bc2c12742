"""``newsletter subscribers import|export|add|remove|list``: thin faces over
``readers.service`` (the functions the form, the API and the editor call).
Exit codes of add, remove and list as in ``newsletter.terminal``."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.addresses import InvalidInput
from newsletter.db import session_scope
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.readers import service
from newsletter.readers.csv_io import ImportFormatError, export_csv, import_csv
from newsletter.terminal import emit_columns, emit_json, emit_json_rows, fail


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


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (import_command, export_command, add_command, remove_command, list_command):
        groups["subscribers"].add_command(command)
