"""``newsletter articles import FILE.json | --feed URL``."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.content.feeds import FeedError, poll_feed
from newsletter.content.service import UpsertReport, upsert_articles


def _print_report(report: UpsertReport) -> None:
    if report.not_modified:
        click.echo("feed not modified since the last poll (HTTP 304): nothing to do")
        return
    click.echo(f"{report.created} created, {report.updated} updated, {len(report.errors)} rejected")
    if report.note:
        click.echo(report.note)
    for index, message in report.errors:
        click.echo(f"  item {index}: {message}", err=True)


@click.command("import")
@with_appcontext
@click.argument("file", type=click.File("rb"), required=False)
@click.option("--feed", "feed_url", metavar="URL", help="An RSS or Atom feed URL to fetch instead of a file.")
@click.option(
    "--tag", "tags", multiple=True, metavar="SLUG", help="Add this tag to every feed entry (repeatable)."
)
def import_articles(file, feed_url, tags):
    """Import articles from a JSON file (an object or a list) or an RSS/Atom feed."""
    settings = current_app.extensions["signal_settings"]
    if bool(file) == bool(feed_url):
        raise click.UsageError("give either FILE.json or --feed URL")
    if feed_url:
        try:
            report = poll_feed(settings, feed_url, tags=tuple(tags))
        except FeedError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    else:
        try:
            data = json.loads(file.read().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            click.echo(f"error: {file.name} is not valid UTF-8 JSON: {exc}", err=True)
            sys.exit(1)
        items = data if isinstance(data, list) else [data]
        report = upsert_articles(items, "file")
    _print_report(report)
    if report.errors and not (report.created or report.updated):
        sys.exit(1)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    groups["articles"].add_command(import_articles)
