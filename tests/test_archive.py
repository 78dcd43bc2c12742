"""The public archive: only issues that went out, generic links, its own CSP, an Atom feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from newsletter import clock
from newsletter.db import session_scope
from newsletter.issues.service import assemble_issue, get_issue
from newsletter.rendering import placeholders
from newsletter.rendering.issue import freeze_issue
from tests.content_fixtures import add_articles, article, mark_sent

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def sent_and_draft(content_settings):
    settings = content_settings(first_issue=45)
    add_articles(settings, [article(1, "data", title="Sent story"), article(2, "research")])
    sent = assemble_issue(settings).issue
    with session_scope() as session:
        freeze_issue(session, get_issue(session, sent.number), settings)
    mark_sent(sent.number)
    clock.advance(timedelta(days=7))
    add_articles(settings, [article(3, "data", title="Draft story")])
    draft = assemble_issue(settings).issue
    return settings, sent, draft


def test_archive_lists_only_sent_issues(sent_and_draft, make_app):
    settings, sent, draft = sent_and_draft
    client = make_app(first_issue=45).test_client()
    page = client.get("/issues")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Issue 045" in body and sent.theme in body
    assert "Issue 046" not in body
    assert client.get("/issues?page=9").status_code == 404


def test_issue_page_is_the_email_with_generic_links_and_a_strict_csp(sent_and_draft, make_app):
    settings, sent, draft = sent_and_draft
    client = make_app().test_client()
    page = client.get(f"/issues/{sent.number}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sent story" in html and "GET THE SIGNAL" in html and "All issues" in html
    assert placeholders.PREFIX not in html
    assert "/unsubscribe/" not in html and "/preferences/" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert client.get(f"/issues/{draft.number}").status_code == 404  # drafts are not public
    assert client.get("/issues/999").status_code == 404


def test_atom_feed(sent_and_draft, make_app):
    settings, sent, draft = sent_and_draft
    response = make_app().test_client().get("/issues/feed.xml")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    root = ET.fromstring(response.data)
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 1
    assert entries[0].find(f"{ATOM}title").text == sent.title
    assert entries[0].find(f"{ATOM}link").get("href") == f"{settings.base_url}/issues/{sent.number}"


def test_archive_page_without_a_stored_render_still_works(content_settings, make_app):
    settings = content_settings.default
    add_articles(settings, [article(1, "data", title='Quotes " & <angles>')])
    issue = assemble_issue(settings).issue
    mark_sent(issue.number)  # sent without a freeze (e.g. imported history)
    page = make_app().test_client().get(f"/issues/{issue.number}")
    assert page.status_code == 200 and "Quotes &#34; &amp; &lt;angles&gt;" in page.get_data(as_text=True)


@pytest.mark.browser
def test_archive_pages_in_a_browser(sent_and_draft, make_app, live_server_factory, page, screenshot):
    settings, sent, draft = sent_and_draft
    server = live_server_factory(make_app)
    problems = []
    page.on(
        "console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(server.url + "/issues")
    assert page.get_by_text("Issue 045").is_visible()
    screenshot(page, "archive-index-390")
    page.get_by_role("link", name=re.compile("Issue 045")).click()
    page.wait_for_url(f"**/issues/{sent.number}")
    assert page.get_by_role("link", name="Sent story").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "archive-issue-390")
    assert problems == []  # no CSP violations (inline styles allowed, nothing blocked)
