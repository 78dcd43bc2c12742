"""``newsletter issue assemble|preview|list|approve|schedule|unschedule|cancel``:
thin faces over ``issues.service``, the functions the editor's buttons call.

Exit codes (``newsletter.terminal``): 0 done, also when it already was (approving
an approved issue); 1 refused, with the reason (no such issue, a state that
does not allow it, a time in the past); 2 bad usage.
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.db import session_scope
from newsletter.issues import states
from newsletter.issues.preview import PreviewError, build_preview
from newsletter.issues.service import (
    IssueError,
    IssueNotFound,
    approve_issue,
    assemble_issue,
    cancel_issue,
    list_issues,
    schedule_issue,
    send_time,
    unschedule_issue,
)
from newsletter.terminal import emit_columns, emit_json, fail, when


@click.command("assemble")
@with_appcontext
def assemble():
    """Assemble the next issue from new tagged articles (a draft for review)."""
    result = assemble_issue(current_app.extensions["signal_settings"])
    click.echo(result.message)
    if result.hint:
        click.echo(result.hint, err=True)


@click.command("preview")
@with_appcontext
@click.argument("number", type=int)
@click.option("--text", is_flag=True, help="Show the text part instead of the HTML.")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout."
)
@click.option(
    "--as", "as_email", metavar="EMAIL", help="Render as this subscriber gets it (topics, name, links)."
)
@click.option("--topics", metavar="SLUGS", help="Render the variant for these comma-separated topics.")
def preview(number, text, out, as_email, topics):
    """Render issue NUMBER as a reader gets it; lint findings go to stderr."""

    settings = current_app.extensions["signal_settings"]
    try:
        result = build_preview(settings, number, as_email=as_email, topics=topics)
    except (IssueNotFound, PreviewError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    body = result.message.text if text else result.message.html
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(body)
        click.echo(f"wrote {out} (variant: {result.variant or 'all sections'})", err=True)
    else:
        click.echo(body, nl=False)
    click.echo(f"Subject: {result.message.subject}", err=True)
    for finding in result.lint:
        click.echo(f"lint {finding}", err=True)


def _settings():
    return current_app.extensions["signal_settings"]


def _who() -> str:
    """Who approved, as the record shows it: the operator's login on this machine."""
    try:
        return f"cli:{getpass.getuser()}"[:320]
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def issue_json(issue) -> dict:
    return {
        "number": issue.number,
        "status": issue.status,
        "title": issue.title,
        "subject": issue.subject,
        "scheduled_for": issue.scheduled_for,
        "approved_at": issue.approved_at,
        "approved_by": issue.approved_by,
        "sent_at": issue.sent_at,
        "recipients": issue.recipients,
        "sent": issue.sent_count,
        "failed": issue.failed_count,
        "skipped": issue.skipped_count,
    }


def _act(action, as_json: bool, done: str, zone=None):
    """Run a lifecycle action; print what the issue is now (or JSON)."""
    try:
        issue = action()
    except IssueError as exc:
        fail(str(exc))
    if as_json:
        emit_json(issue_json(issue))
    else:
        moment = issue.scheduled_for
        shown = f"{when(moment, zone or _settings().tz)} ({when(moment, UTC)})" if moment else "-"
        click.echo(done.format(issue=issue, when=shown))


_JSON = click.option("--json", "as_json", is_flag=True, help="Print the issue as JSON.")


@click.command("list")
@with_appcontext
@click.option("--status", type=click.Choice(states.ALL), help="Only issues with this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(status, limit, as_json):
    """The newest issues with their status, time and counts."""
    tz = _settings().tz
    with session_scope() as session:
        found = list_issues(session, status=status, limit=limit)
    if as_json:
        emit_json([issue_json(i) for i in found])
        return
    rows = (
        (
            f"{i.number:03d}",
            i.status,
            when(i.scheduled_for if i.status == states.SCHEDULED else i.sent_at, tz),
            f"{i.sent_count}/{i.recipients}" if i.recipients else "-",
            i.title,
        )
        for i in found
    )
    if not emit_columns(rows, ("NO.", "STATUS", "SCHEDULED/SENT", "SENT", "TITLE"), (4, 10, 22, 12)):
        click.echo("no issues yet: `newsletter issue assemble` makes the first", err=True)


@click.command("approve")
@with_appcontext
@click.argument("number", type=int)
@_JSON
def approve_command(number, as_json):
    """Approve draft NUMBER: what is approved is what is sent (at the slot, or with `issue send`)."""
    _act(lambda: approve_issue(number, by=_who()), as_json, "{issue.label} is {issue.status}")


@click.command("schedule")
@with_appcontext
@click.argument("number", type=int)
@click.option("--at", "at", required=True, metavar="TIME", help='When to send: "2026-12-07 08:00".')
@click.option(
    "--tz",
    "zone",
    metavar="ZONE",
    help="The time zone of --at (default: NEWSLETTER_TIMEZONE), e.g. Europe/Berlin.",
)
@_JSON
def schedule_command(number, at, zone, as_json):
    """Send issue NUMBER at a time of its own (this approves a draft; the scheduler sends it)."""
    try:
        moment = send_time(at, zone or _settings().timezone)
    except IssueError as exc:
        fail(str(exc))
    _act(
        lambda: schedule_issue(number, moment, by=_who()),
        as_json,
        "{issue.label} is scheduled for {when}",
        zone=moment.tzinfo,
    )


@click.command("unschedule")
@with_appcontext
@click.argument("number", type=int)
@_JSON
def unschedule_command(number, as_json):
    """Take issue NUMBER off its time; it stays approved."""
    _act(lambda: unschedule_issue(number), as_json, "{issue.label} is {issue.status}")


@click.command("cancel")
@with_appcontext
@click.argument("number", type=int)
@_JSON
def cancel_command(number, as_json):
    """Cancel issue NUMBER before it is sent; its articles go back to the pool (a send
    in progress is stopped with `issue cancel-send`)."""
    _act(lambda: cancel_issue(number), as_json, "{issue.label} is {issue.status}")


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (
        assemble,
        preview,
        list_command,
        approve_command,
        schedule_command,
        unschedule_command,
        cancel_command,
    ):
        groups["issue"].add_command(command)
