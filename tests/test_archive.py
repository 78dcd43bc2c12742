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
from tests.helpers import axe_findings

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


def test_issue_page_is_an_article_page_with_link_previews_and_the_box(sent_and_draft, make_app):
    settings, sent, draft = sent_and_draft
    client = make_app().test_client()
    page = client.get(f"/issues/{sent.number}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sent story" in html and "Issue 045" in html and "All issues" in html
    article = html[html.index('<article class="issue-article">') :]
    article = article[: article.index("</article>")]
    assert '<a href="https://example.com/posts/1" rel="noopener">Sent story</a>' in article  # the source link
    assert "By Ana Lee" in article and "4 min read" in article and ">example.com</a>" in article
    assert '<ul class="tags" aria-label="Tags"><li>Data</li></ul>' in article
    head = html[: html.index("</head>")]
    for tag in (
        '<meta property="og:type" content="article">',
        f'<meta property="og:title" content="{sent.title}">',
        f'<meta property="og:url" content="{settings.base_url}/issues/{sent.number}">',
        '<meta name="twitter:card" content="summary">',
        f'<meta name="twitter:title" content="{sent.title}">',
    ):
        assert tag in head
    assert '<meta property="og:description" content="' in head and '<meta name="twitter:description"' in head
    assert f'src="/embed?page=/issues/{sent.number}"' in html  # the sign-up box at its foot
    assert placeholders.PREFIX not in html
    assert "/unsubscribe/" not in html and "/preferences/" not in html and "csrf_token" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-src 'self'" in csp
    assert client.get(f"/issues/{draft.number}").status_code == 404  # drafts are not public
    assert client.get("/issues/999").status_code == 404


def test_link_previews_carry_an_https_image_with_its_alt(content_settings, make_app):
    settings = content_settings.default
    add_articles(
        settings,
        [article(1, "data", image_url="https://img.example.com/a.png", image_alt="A chart of agents")],
    )
    issue = assemble_issue(settings).issue
    mark_sent(issue.number)
    head = make_app().test_client().get(f"/issues/{issue.number}").get_data(as_text=True).split("</head>")[0]
    assert '<meta property="og:image" content="https://img.example.com/a.png">' in head
    assert '<meta name="twitter:card" content="summary_large_image">' in head
    assert '<meta name="twitter:image:alt" content="A chart of agents">' in head


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
    box = page.frame_locator("iframe.box-frame")
    box.get_by_role("button", name="Subscribe").wait_for()  # the sign-up box at the foot
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "archive-issue-390")
    assert axe_findings(page.main_frame) == []
    frame = page.frame_locator("iframe.box-frame").locator("html").element_handle().owner_frame()
    assert axe_findings(frame) == []
    assert problems == []  # no CSP violations


def test_hostile_article_fields_are_text_on_the_issue_page(content_settings, make_app):
    settings = content_settings.default
    add_articles(
        settings,
        [
            article(
                1,
                "data",
                author='<img src=x onerror="alert(1)">',
                synopsis="<script>alert(2)</script> *fine*",
                url="https://example.com/a?x=1&y=<2>",
            )
        ],
    )
    issue = assemble_issue(settings).issue
    mark_sent(issue.number)
    html = make_app().test_client().get(f"/issues/{issue.number}").get_data(as_text=True)
    assert "<img src=x" not in html and "By &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "<script>alert(2)" not in html and "<em>fine</em>" in html
    assert 'href="https://example.com/a?x=1&amp;y=%3C2%3E"' in html  # the URL as stored, escaped
