"""``newsletter mail list|retry|send``: the transactional mail queue from the
command line (the editor's Mail queue page does the same). Exit codes as in
``newsletter.terminal``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from newsletter.db import session_scope
from newsletter.delivery import mailqueue
from newsletter.delivery.transports import TransportError
from newsletter.extensions import settings as _settings
from newsletter.models import MAIL_STATUSES
from newsletter.terminal import emit_columns, emit_json, fail, when


@click.command("list")
@with_appcontext
@click.option("--status", type=click.Choice(MAIL_STATUSES), help="Only mail with this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(status, limit, as_json):
    """The newest transactional mails, with the count of each status on stderr."""
    with session_scope() as session:
        counts = mailqueue.counts(session)
        rows = mailqueue.listing(session, status=status or "", size=limit)
    if as_json:
        emit_json({"counts": counts, "mail": [dict(r._mapping) for r in rows]})
        return
    click.echo(" · ".join(f"{k} {v}" for k, v in counts.items()), err=True)
    tz = _settings().tz
    emit_columns(
        (
            (
                r.id,
                r.status,
                r.kind,
                r.attempts,
                when(r.created_at, tz),
                r.to_email,
                r.last_error or r.subject,
            )
            for r in rows
        ),
        ("ID", "STATUS", "KIND", "TRIES", "QUEUED", "TO", "SUBJECT OR LAST ERROR"),
        (7, 8, 13, 5, 22, 30),
    )


@click.command("retry")
@with_appcontext
@click.argument("mail_id", metavar="ID", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Queue every failed mail again.")
def retry_command(mail_id, all_failed):
    """Queue failed mail ID (or --failed: all of them) again; the sender takes it from there."""
    if (mail_id is None) == (not all_failed):
        raise click.UsageError("give a mail ID or --failed")
    with session_scope() as session:
        count = mailqueue.retry(session, mail_id)
    if mail_id is not None and not count:
        fail(f"mail {mail_id} is not failed or skipped (or does not exist)")
    click.echo(f"{count} mail{'s' if count != 1 else ''} queued again")


@click.command("send")
@with_appcontext
def send_command():
    """Send every due mail now, in this process, and report (normally the sender of
    `serve`, `scheduler` or `worker` does this by itself)."""
    settings = _settings()
    mailqueue.reclaim_expired(settings)
    try:
        stats = mailqueue.send_due(settings)
    except TransportError as exc:
        fail(f"the transport is not reachable; the mail stays queued: {exc}")
    click.echo(f"{stats.sent} sent, {stats.retried} to retry, {stats.failed} failed, {stats.skipped} skipped")
    if stats.failed:
        raise SystemExit(1)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (list_command, retry_command, send_command):
        groups["mail"].add_command(command)
