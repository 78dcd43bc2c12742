"""The public archive: ``/issues``, ``/issues/<number>``, ``/issues/feed.xml``.

Public means the mail is out: issues that are sending, paused or sent
(a reader may click "view in browser" while the send is still running).
Drafts and approved issues are 404 for everyone here; editors preview them
in the editor. An issue page is the frozen "all sections" render with the
personal links replaced by generic ones, served with its own CSP (the email
needs inline styles) that still allows no script at all.
"""

from __future__ import annotations

from flask import Response, abort, make_response, render_template, url_for
from sqlalchemy import func
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.extensions import settings
from newsletter.issues import states
from newsletter.models import Issue, IssueRender
from newsletter.readers.views import bp
from newsletter.rendering.issue import render_variant
from newsletter.rendering.personalise import generic
from newsletter.web import int_arg, public_cache

PUBLIC_STATUSES = sorted(states.PUBLIC)
PER_PAGE = 25
FEED_ENTRIES = 20
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
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
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    if page > pages:
        abort(404)
    body = render_template("archive/index.html", issues=issues, page=page, pages=pages, published=_published)
    return public_cache(
        make_response(body),
        max_age=INDEX_MAX_AGE,
        stale=INDEX_STALE,
        last_modified=max((_changed(i) for i in issues), default=None),
    )


@bp.get("/issues/<int:number>", endpoint="archive_issue")
def archive_issue(number: int):
    with session_scope() as session:
        issue = session.exec(_public().where(Issue.number == number)).first()
        if issue is None:
            abort(404)
        render = session.exec(
            select(IssueRender).where(IssueRender.issue_id == issue.id, IssueRender.variant == "")
        ).first()
        if render is None:  # frozen before "" was always kept: render it now (not stored)
            render = render_variant(session, issue, "", settings())
        changed = _changed(issue)
    html = generic(render, settings())
    banner = (
        '<div style="font:14px/1.4 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;text-align:center;'
        'padding:10px;background:#14161a;color:#c9ccd3">'
        f'<a href="{url_for("readers.archive_index")}" style="color:#ffffff">All issues</a> &#183; '
        f'<a href="{url_for("readers.index")}" style="color:#ffffff">Subscribe to GET THE SIGNAL</a></div>'
    )
    start = html.find("<body")
    if start != -1:
        end = html.find(">", start) + 1
        html = html[:end] + banner + html[end:]
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ISSUE_CSP
    return public_cache(response, max_age=ISSUE_MAX_AGE, stale=ISSUE_STALE, last_modified=changed)


@bp.get("/issues/feed.xml", endpoint="archive_feed")
def archive_feed():
    base = settings().base_url
    with session_scope() as session:
        issues = session.exec(_public().order_by(Issue.number.desc()).limit(FEED_ENTRIES)).all()
    body = render_template("archive/feed.xml", issues=issues, base=base, published=_published)
    return Response(body, mimetype="application/atom+xml")
