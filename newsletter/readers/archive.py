"""The public archive: ``/issues``, ``/issues/<number>``, ``/issues/feed.xml``.

Public means the mail is out: issues that are sending, paused or sent
(a reader may click "view in browser" while the send is still running).
Drafts and approved issues are 404 for everyone here; editors preview them
in the editor. An issue page is an article page, like the publisher's own:
the articles as approved (the snapshot), with tags, author, reading time
and source links, metadata for link previews, and the sign-up box.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import abort, render_template
from markupsafe import Markup
from sqlalchemy import bindparam, func
from sqlmodel import select

from newsletter.content.sanitise import markdown_to_html, neutralise
from newsletter.db import session_scope
from newsletter.extensions import settings
from newsletter.issues import states
from newsletter.models import Article, Issue, IssueArticle
from newsletter.readers.views import bp
from newsletter.rendering import wording
from newsletter.rendering.view import CardView, card_view, inbox_preheader, issue_content, plain_text
from newsletter.web import int_arg, public_cache

PUBLIC_STATUSES = sorted(states.PUBLIC)
PER_PAGE = 25
FEED_ENTRIES = 20
# How long caches keep the pages (``web.public_cache``): the list changes when an
# issue goes out, an issue's page hardly ever.
INDEX_MAX_AGE, INDEX_STALE = 300, 3600
ISSUE_MAX_AGE, ISSUE_STALE = 3600, 86400


def _public():
    return select(Issue).where(Issue.status.in_(PUBLIC_STATUSES))


def _published(issue: Issue):
    return issue.sent_at or issue.send_started_at or issue.updated_at


def _latest(*times: datetime | None) -> datetime | None:
    return max((t for t in times if t is not None), default=None)


def _changed(stamp) -> datetime | None:
    """When what the archive shows of an issue last changed (``stamp``: a row of ``_stamps``)."""
    return _latest(stamp.updated_at, stamp.sent_at, stamp.send_started_at, stamp.articles_changed)


def _stamps():
    """Public issues with what their archive pages are made from, read without
    rendering anything: the issue's status and change times, and how many
    articles it shows and when the newest of them last changed (an issue
    shows its approval snapshots, but each article's date and source come
    from the article itself). One row per issue: part of the pages' ETags."""
    return (
        select(
            Issue.id,
            Issue.number,
            Issue.status,
            Issue.updated_at,
            Issue.sent_at,
            Issue.send_started_at,
            func.count(Article.id).label("articles"),
            func.max(Article.updated_at).label("articles_changed"),
        )
        .join(IssueArticle, IssueArticle.issue_id == Issue.id, isouter=True)
        .join(Article, Article.id == IssueArticle.article_id, isouter=True)
        .where(Issue.status.in_(PUBLIC_STATUSES))
        .group_by(Issue.id)
    )


# Built once: a statement's construction costs more than running it on a small archive.
_TOTALS = select(func.count(Issue.id).filter(Issue.status.in_(PUBLIC_STATUSES)), func.max(Issue.updated_at))
_PAGE_STAMPS = _stamps().order_by(Issue.number.desc()).offset(bindparam("offset")).limit(PER_PAGE)
_FEED_STAMPS = _stamps().order_by(Issue.number.desc()).limit(FEED_ENTRIES)
_ISSUE_STAMP = _stamps().where(Issue.number == bindparam("number"))


@bp.get("/issues", endpoint="archive_index")
def archive_index():
    """One page of the archive. Its validator is read before anything is
    rendered: the number of public issues, the shown issues' ids, statuses
    and change times, and their articles' (``public_cache``). Last-Modified
    is the newest change of any issue, so an issue leaving the archive (a
    send cancelled) moves it forward too."""
    page = int_arg("page", 1)
    if page < 1:
        abort(404)
    with session_scope() as session:
        total, newest = session.exec(_TOTALS).one()
        pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
        if page > pages:
            abort(404)
        shown = session.exec(_PAGE_STAMPS, params={"offset": (page - 1) * PER_PAGE}).all()

        def render() -> str:
            issues, preheaders = _listed(session, shown)
            return render_template(
                "archive/index.html",
                issues=issues,
                page=page,
                pages=pages,
                published=_published,
                preheaders=preheaders,
            )

        return public_cache(
            ("index", page, total, [tuple(row) for row in shown]),
            render,
            max_age=INDEX_MAX_AGE,
            stale=INDEX_STALE,
            last_modified=_latest(newest, *(_changed(row) for row in shown)),
        )


def _listed(session, shown) -> tuple[list[Issue], dict[int, str]]:
    """The issues a list shows (a page of the archive, the feed: ``shown``, rows
    of ``_stamps``), newest first, and each one's inbox preheader."""
    ids = [row.id for row in shown]
    issues = session.exec(_public().where(Issue.id.in_(ids)).order_by(Issue.number.desc())).all()
    return issues, {issue.id: inbox_preheader(session, issue) for issue in issues}


@dataclass
class ArticleCard:
    """One article on the issue's web page: what the email shows, plus its tags."""

    card: CardView
    author: str
    minutes: int | None
    source: str
    tags: list[str]


def _sections(session, issue: Issue) -> list[tuple[str, list[ArticleCard]]]:
    """(section name, articles) in reading order, from what was approved and sent."""
    sections: dict[str, tuple[str, list[ArticleCard]]] = {}
    for row in issue_content(session, issue):
        article = row.article
        name, cards = sections.setdefault(row.link.section, (neutralise(row.section_name), []))
        cards.append(
            ArticleCard(
                card=card_view(article),
                author=neutralise(article.author or ""),
                minutes=article.reading_minutes,
                source=(urlsplit(article.url).hostname or "").removeprefix("www."),
                tags=[neutralise(t) for t in row.tags],
            )
        )
    return list(sections.values())


def _description(preheader: str, intro_text: str) -> str:
    text = preheader or " ".join(intro_text.split())
    return text[:297] + "…" if len(text) > 300 else text


@bp.get("/issues/<int:number>", endpoint="archive_issue")
def archive_issue(number: int):
    """The issue as an article page: its articles with tags, author, reading
    time and source links, Open Graph and Twitter card metadata for shared
    links, and the sign-up box at its foot (the iframe: this page itself holds
    no token and no personal link, so every reader gets the same bytes).
    Its validator is the issue's status and change times, its articles', and
    the public URL it names (``public_cache``), read before rendering."""
    base_url = settings().base_url
    with session_scope() as session:
        stamp = session.exec(_ISSUE_STAMP, params={"number": number}).first()
        if stamp is None:
            abort(404)

        def render() -> str:
            issue = session.get(Issue, stamp.id)
            sections = _sections(session, issue)
            preheader = inbox_preheader(session, issue)
            cards = [a for _, articles in sections for a in articles]
            filled = wording.values([name for name, _ in sections], [a.card.title for a in cards])
            intro_html = markdown_to_html(wording.fill(issue.intro, filled))
            return render_template(
                "archive/issue.html",
                issue=issue,
                title=neutralise(issue.title) or f"{issue.label}: {neutralise(issue.theme)}",
                intro_html=Markup(intro_html),
                description=_description(preheader, plain_text(intro_html)),
                sections=sections,
                minutes=sum(a.minutes or 0 for a in cards),
                published=_published(issue),
                url=f"{base_url}/issues/{issue.number}",
                image=next((a.card for a in cards if a.card.has_image), None),
            )

        return public_cache(
            ("issue", base_url, tuple(stamp)),
            render,
            max_age=ISSUE_MAX_AGE,
            stale=ISSUE_STALE,
            last_modified=_changed(stamp),
        )


@bp.get("/issues/feed.xml", endpoint="archive_feed")
def archive_feed():
    """The Atom feed of the newest issues, cached like the archive's first
    page (feed readers poll it): its validator is the same kind of stamps,
    read before anything is rendered, plus the public URL its links carry."""
    base = settings().base_url
    with session_scope() as session:
        _, newest = session.exec(_TOTALS).one()
        shown = session.exec(_FEED_STAMPS).all()

        def render() -> str:
            issues, preheaders = _listed(session, shown)
            return render_template(
                "archive/feed.xml", issues=issues, base=base, published=_published, preheaders=preheaders
            )

        return public_cache(
            ("feed", base, [tuple(row) for row in shown]),
            render,
            max_age=INDEX_MAX_AGE,
            stale=INDEX_STALE,
            last_modified=_latest(newest, *(_changed(row) for row in shown)),
            mimetype="application/atom+xml",
        )
