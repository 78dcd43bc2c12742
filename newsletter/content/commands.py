"""``newsletter articles import|list|hold|release`` and ``newsletter sections list|set``:
thin faces over ``content.service`` and ``content.sections`` (the functions
the editor's articles page uses). Exit codes as in ``newsletter.terminal``.
"""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.content import sections
from newsletter.content.feeds import FeedError, poll_feed
from newsletter.content.service import (
    ArticleInvalid,
    UpsertReport,
    list_articles,
    parse_time,
    set_held,
    upsert_articles,
)
from newsletter.db import session_scope
from newsletter.terminal import emit_columns, emit_json, fail, when


def _print_report(report: UpsertReport) -> None:
    if report.not_modified:
        click.echo("feed not modified since the last poll (HTTP 304): nothing to do")
        return
    click.echo(
        f"{report.created} created, {report.updated} updated, {len(report.errors)} rejected"
        + (f", {len(report.skipped)} skipped" if report.skipped else "")
    )
    if report.note:
        click.echo(report.note)
    for index, message in report.errors + report.skipped:
        click.echo(f"  item {index}: {message}", err=True)


@click.command("import")
@with_appcontext
@click.argument("file", type=click.File("rb"), required=False)
@click.option("--feed", "feed_url", metavar="URL", help="An RSS or Atom feed URL to fetch instead of a file.")
@click.option(
    "--tag", "tags", multiple=True, metavar="SLUG", help="Add this tag to every feed entry (repeatable)."
)
@click.option(
    "--allow-file",
    is_flag=True,
    help="Let --feed read a file:// URL (refused otherwise, and never from NEWSLETTER_FEEDS).",
)
def import_articles(file, feed_url, tags, allow_file):
    """Import articles from a JSON file (an object or a list) or an RSS/Atom feed."""
    settings = current_app.extensions["signal_settings"]
    if bool(file) == bool(feed_url):
        raise click.UsageError("give either FILE.json or --feed URL")
    if feed_url:
        try:
            report = poll_feed(settings, feed_url, tags=tuple(tags), allow_file=allow_file)
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


def _settings():
    return current_app.extensions["signal_settings"]


@click.command("list")
@with_appcontext
@click.option(
    "--since", metavar="TIME", help="Only articles published after this (2026-12-01 or an ISO 8601 time)."
)
@click.option("--tag", metavar="SLUG", help="Only articles with this tag.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(since, tag, limit, as_json):
    """The newest articles: id, published, held back or not, tags and title."""
    try:
        after = parse_time(since, "--since") if since else None
    except ArticleInvalid as exc:
        fail(str(exc))
    with session_scope() as session:
        found = list_articles(session, since=after, tag=tag, limit=limit)
    if as_json:
        emit_json(
            [
                {
                    "id": a.id,
                    "title": a.title,
                    "url": a.url,
                    "published_at": a.published_at,
                    "held": a.held,
                    "tags": tags,
                    "source": a.source,
                }
                for a, tags in found
            ]
        )
        return
    tz = _settings().tz
    rows = (
        (a.id, when(a.published_at, tz), "held" if a.held else "", ",".join(tags), a.title)
        for a, tags in found
    )
    if not emit_columns(rows, ("ID", "PUBLISHED", "HELD", "TAGS", "TITLE"), (6, 22, 5, 24)):
        click.echo("no articles match", err=True)


def _hold(article_id: int, held: bool, as_json: bool) -> None:
    try:
        with session_scope() as session:
            article = set_held(session, article_id, held)
            title = article.title
    except ArticleInvalid as exc:
        fail(str(exc))
    if as_json:
        emit_json({"id": article_id, "held": held, "title": title})
    else:
        click.echo(
            f"article {article_id} “{title}” is {'held back from' if held else 'back in'} the next issue"
        )


@click.command("hold")
@with_appcontext
@click.argument("article_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hold_command(article_id, as_json):
    """Keep article ID out of the next issue (assembly skips it)."""
    _hold(article_id, True, as_json)


@click.command("release")
@with_appcontext
@click.argument("article_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def release_command(article_id, as_json):
    """Let article ID into the next issue again."""
    _hold(article_id, False, as_json)


@click.command("list")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sections_list(as_json):
    """The sections in order (and where they come from), and every tag with its article count."""
    with session_scope() as session:
        choice = sections.current(session, _settings())
        chosen = {t.slug: n for n, t in enumerate(choice.tags, 1)}
        tags = [(t.slug, t.name, count, chosen.get(t.slug)) for t, count in sections.usage(session)]
    if as_json:
        emit_json(
            {
                "source": choice.source,
                "sections": [{"slug": t.slug, "name": t.name} for t in choice.tags],
                "missing": choice.missing,
                "tags": [{"slug": s, "name": n, "articles": c, "section": p} for s, n, c, p in tags],
            }
        )
        return
    click.echo(f"Sections ({sections.SOURCES[choice.source]}):")
    for n, tag in enumerate(choice.tags, 1):
        click.echo(f"  {n}. {tag.slug}  {tag.name}")
    if not choice.tags:
        click.echo("  none yet")
    if choice.missing:
        click.echo(f"  NEWSLETTER_SECTIONS names tags no article has: {', '.join(choice.missing)}")
    click.echo("")
    emit_columns(
        ((s, c, p or "", n) for s, n, c, p in tags), ("TAG", "ARTICLES", "SECTION", "NAME"), (24, 8, 7)
    )
    if choice.source == "derived":
        click.echo(f"\n{sections.HOW_TO_CHOOSE}", err=True)


@click.command("set")
@with_appcontext
@click.argument("slugs", metavar="SLUG[,SLUG…]", nargs=-1, required=True)
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar='SLUG="Name"',
    help='Rename a section (repeatable): --name ai="AI & ML".',
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sections_set(slugs, names, as_json):
    """Make these tags the sections, in this order (others stop being sections)."""
    wanted = [s for part in slugs for s in part.split(",") if s.strip()]
    renames = {}
    for item in names:
        slug, sep, name = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use SLUG=Name", param_hint="--name")
        renames[slug.strip()] = name.strip()
    try:
        with session_scope() as session:
            chosen = [(t.slug, t.name) for t in sections.set_sections(session, wanted, renames)]
    except (sections.SectionsError, ArticleInvalid) as exc:
        fail(str(exc))
    if as_json:
        emit_json({"sections": [{"slug": s, "name": n} for s, n in chosen]})
    else:
        click.echo("sections: " + ", ".join(f"{n} ({s})" for s, n in chosen))
    if _settings().sections:
        click.echo("note: NEWSLETTER_SECTIONS is set and wins over this choice until you unset it", err=True)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (import_articles, list_command, hold_command, release_command):
        groups["articles"].add_command(command)
    groups["sections"].add_command(sections_list)
    groups["sections"].add_command(sections_set)
