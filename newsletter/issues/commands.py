"""``newsletter issue assemble`` and ``newsletter issue preview N``."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.issues.preview import PreviewError, build_preview
from newsletter.issues.service import IssueNotFound, assemble_issue


@click.command("assemble")
@with_appcontext
def assemble():
    """Assemble the next issue from new tagged articles (a draft for review)."""
    result = assemble_issue(current_app.extensions["signal_settings"])
    click.echo(result.message)


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


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    groups["issue"].add_command(assemble)
    groups["issue"].add_command(preview)
