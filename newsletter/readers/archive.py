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
from urllib.parse import urlsplit

from flask import Response, abort, make_response, render_template
from markupsafe import Markup
from sqlalchemy import func
from sqlmodel import select

from newsletter.content.sanitise import markdown_to_html, neutralise
from newsletter.db import session_scope
from newsletter.extensions import settings
from newsletter.issues import states
from newsletter.models import Issue
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


def _changed(issue: Issue):
    """When what the archive shows of ``issue`` last changed."""
    return max(t for t in (issue.updated_at, issue.sent_at, issue.send_started_at) if t is not None)


@bp.get("/issues", endpoint="archive_index")
def archive_index():
    page = int_arg("page", 1)
    if page < 1:
        abort(404)
    with session_scope() as session:
        total = session.exec(select(func.count()).select_from(_public().subquery())).one()
        issues = session.exec(
            _public().order_by(Issue.number.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
        ).all()
        preheaders = {issue.id: inbox_preheader(session, issue) for issue in issues}
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    if page > pages:
        abort(404)
    body = render_template(
        "archive/index.html",
        issues=issues,
        page=page,
        pages=pages,
        published=_published,
        preheaders=preheaders,
    )
    return public_cache(
        make_response(body),
        max_age=INDEX_MAX_AGE,
        stale=INDEX_STALE,
        last_modified=max((_changed(i) for i in issues), default=None),
    )


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
    no token and no personal link, so every reader gets the same bytes)."""
    with session_scope() as session:
        issue = session.exec(_public().where(Issue.number == number)).first()
        if issue is None:
            abort(404)
        sections = _sections(session, issue)
        preheader = inbox_preheader(session, issue)
        published = _published(issue)
        changed = _changed(issue)
        session.expunge(issue)
    cards = [a for _, articles in sections for a in articles]
    filled = wording.values([name for name, _ in sections], [a.card.title for a in cards])
    intro_html = markdown_to_html(wording.fill(issue.intro, filled))
    image = next((a.card for a in cards if a.card.has_image), None)
    body = render_template(
        "archive/issue.html",
        issue=issue,
        title=neutralise(issue.title) or f"{issue.label}: {neutralise(issue.theme)}",
        intro_html=Markup(intro_html),
        description=_description(preheader, plain_text(intro_html)),
        sections=sections,
        minutes=sum(a.minutes or 0 for a in cards),
        published=published,
        url=f"{settings().base_url}/issues/{issue.number}",
        image=image,
    )
    return public_cache(make_response(body), max_age=ISSUE_MAX_AGE, stale=ISSUE_STALE, last_modified=changed)


@bp.get("/issues/feed.xml", endpoint="archive_feed")
def archive_feed():
    base = settings().base_url
    with session_scope() as session:
        issues = session.exec(_public().order_by(Issue.number.desc()).limit(FEED_ENTRIES)).all()
        preheaders = {issue.id: inbox_preheader(session, issue) for issue in issues}
    body = render_template(
        "archive/feed.xml", issues=issues, base=base, published=_published, preheaders=preheaders
    )
    return Response(body, mimetype="application/atom+xml")
