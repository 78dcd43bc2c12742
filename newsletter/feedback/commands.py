"""``newsletter subscribers poll-bounces | suppress | unsuppress`` and
``newsletter issue outcomes N``: thin faces over the feedback services."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlmodel import select

from newsletter import db
from newsletter.feedback.mailbox import poll_bounce_mailbox
from newsletter.feedback.stats import issue_links, issue_outcomes
from newsletter.models import Issue
from newsletter.suppression import suppress, unsuppress


def _settings():
    return current_app.extensions["signal_settings"]


@click.command("poll-bounces")
@with_appcontext
def poll_bounces():
    """Read new DSNs and ARF complaints from NEWSLETTER_BOUNCE_MAILBOX once."""

    settings = _settings()
    if not settings.bounce_mailbox:
        raise click.ClickException("NEWSLETTER_BOUNCE_MAILBOX is not set")
    try:
        count = poll_bounce_mailbox(settings)
    except Exception as exc:  # noqa: BLE001 - imaplib and socket errors, reported plainly
        raise click.ClickException(f"bounce mailbox: {exc}") from None
    click.echo(f"{count} bounces/complaints recorded")


@click.command("suppress")
@with_appcontext
@click.argument("email")
@click.option("--reason", default="manual", show_default=True, help="Stored with the hashed address.")
def suppress_command(email: str, reason: str):
    """Never mail EMAIL again (kept as a hash; survives deletion and re-import)."""

    with db.session_scope() as session:
        row = suppress(session, email, reason[:40])
    click.echo(f"suppressed ({row.reason})")


@click.command("unsuppress")
@with_appcontext
@click.argument("email")
def unsuppress_command(email: str):
    """Allow EMAIL to subscribe again (it must still subscribe and confirm)."""

    with db.session_scope() as session:
        removed = unsuppress(session, email)
    if not removed:
        click.echo("not on the suppression list", err=True)
        sys.exit(1)
    click.echo("removed from the suppression list")


@click.command("outcomes")
@with_appcontext
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def outcomes_command(number: int, as_json: bool):
    """Delivered, failed, bounced, complained, unsubscribed and clicks of issue NUMBER."""

    with db.session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).first()
        if issue is None:
            click.echo(f"no issue {number}", err=True)
            sys.exit(1)
        out = issue_outcomes(session, issue.id)
        links = issue_links(session, issue.id)
    if as_json:
        click.echo(json.dumps({"issue": number, **out, "links": [{"url": u, "clicks": c} for u, c in links]}))
        return
    click.echo(f"Issue {number:03d}")
    for key in ("total", "sent", "delivered", "failed", "bounced", "complained", "unsubscribed", "clicks"):
        click.echo(f"  {key:<13}{out[key]}")
    click.echo(f"  {'complaints':<13}{out['complaint_rate']:.2%} of delivered (keep under 0.3%)")
    for url, count in links:
        click.echo(f"  {count:>6}  {url}")


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    groups["subscribers"].add_command(poll_bounces)
    groups["subscribers"].add_command(suppress_command)
    groups["subscribers"].add_command(unsuppress_command)
    groups["issue"].add_command(outcomes_command)
