"""Optional aggregate click counts: signed redirects (no open redirect),
counts per link per issue, nothing per person."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from newsletter import db
from newsletter.feedback.stats import issue_links
from newsletter.models import ClickCount, Event
from newsletter.rendering import clicks as links
from tests.feedback_fixtures import make_issue

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database

ARTICLE = "https://example.com/articles/ai-ethics?utm_source=signal&page=2#part-3"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


@pytest.fixture
def counting(make_app):
    app = make_app(click_counts="aggregate")
    return app, app.extensions["signal_settings"]


def test_signed_link_redirects_and_counts_per_link(counting):
    app, settings = counting
    issue = make_issue(7)
    client = app.test_client()
    link = links.click_url(settings, issue, ARTICLE)
    assert link.startswith(f"{settings.base_url}/c/{issue}/")
    for _ in range(3):
        r = client.get(path_of(link))
        assert r.status_code == 302 and r.headers["Location"] == ARTICLE
        assert r.headers["Cache-Control"] == "no-store"
    other = links.click_url(settings, issue, "https://example.org/other")
    assert client.get(path_of(other)).headers["Location"] == "https://example.org/other"
    with db.session_scope() as s:
        assert issue_links(s, issue) == [(ARTICLE, 3), ("https://example.org/other", 1)]
        # aggregate only: the table has no column that could name a reader, and no event is written
        assert set(ClickCount.model_fields) == {"id", "issue_id", "url_hash", "url", "count"}
        assert s.exec(select(Event)).all() == []


def test_no_open_redirect(counting):
    app, settings = counting
    issue = make_issue(7)
    client = app.test_client()
    link = links.click_url(settings, issue, ARTICLE)
    parts = urlsplit(link)
    sig = parts.path.rsplit("/", 1)[1]
    attempts = [
        f"/c/{issue}/{sig}?u=https://attacker.example/",  # altered destination
        f"/c/{issue}/{sig}?u=" + parse_qs(parts.query)["u"][0] + "x",  # appended to
        f"/c/{issue + 1}/{sig}?{parts.query}",  # moved to another issue
        f"/c/{issue}/forged?{parts.query}",  # made-up signature
        f"/c/{issue}/{sig}",  # no destination
        f"/c/{issue}/{sig}?u=javascript:alert(1)",
    ]
    for attempt in attempts:
        r = client.get(attempt)
        assert r.status_code == 404, attempt
        assert "Location" not in r.headers
    # a signed javascript: URL is refused too
    js = links.click_url(settings, issue, "javascript:alert(1)")
    assert client.get(path_of(js)).status_code == 404
    with db.session_scope() as s:
        assert s.exec(select(ClickCount)).all() == []


def test_off_by_default_links_still_work_but_are_not_counted(make_app, counting):
    _, signing = counting
    issue = make_issue(7)
    app = make_app()  # NEWSLETTER_CLICK_COUNTS=off
    assert app.extensions["signal_settings"].click_counts == "off"
    link = links.click_url(signing, issue, ARTICLE)
    assert app.test_client().get(path_of(link)).headers["Location"] == ARTICLE
    with db.session_scope() as s:
        assert s.exec(select(ClickCount)).all() == []


def test_unknown_issue_redirects_without_counting(counting):
    app, settings = counting
    link = links.click_url(settings, 999, ARTICLE)
    assert app.test_client().get(path_of(link)).status_code == 302
    with db.session_scope() as s:
        assert s.exec(select(ClickCount)).all() == []


FROZEN = f"""<html><body>
<a href="{html.escape(ARTICLE)}" style="color:#000">AI ethics</a>
<a class="x" href='https://example.org/b'>B</a>
<a href="%%GTS_UNSUBSCRIBE_URL%%">Unsubscribe</a>
<a href="%%GTS_PREFERENCES_URL%%">Preferences</a>
<a href="mailto:editor@example.org">Write to us</a>
<a href="http://localhost/unsubscribe/abc">old style</a>
<img src="https://example.org/image.png">
</body></html>"""


def test_rewrite_links_only_touches_article_links(counting, make_settings):
    app, settings = counting
    issue = make_issue(7)
    assert links.rewrite_links(FROZEN, make_settings(), issue) == FROZEN  # off: untouched
    out = links.rewrite_links(FROZEN, settings, issue)
    hrefs = [html.unescape(h) for h in re.findall(r"""href=["']([^"']*)["']""", out)]
    assert hrefs[0] == links.click_url(settings, issue, ARTICLE)
    assert hrefs[1] == links.click_url(settings, issue, "https://example.org/b")
    assert hrefs[2:] == [
        "%%GTS_UNSUBSCRIBE_URL%%",
        "%%GTS_PREFERENCES_URL%%",
        "mailto:editor@example.org",
        "http://localhost/unsubscribe/abc",
    ]
    assert 'src="https://example.org/image.png"' in out
    # following the rewritten link lands exactly on the original (query and fragment kept)
    r = app.test_client().get(path_of(hrefs[0]))
    assert r.headers["Location"] == ARTICLE
    text = f"Read: {ARTICLE}\nUnsubscribe: %%GTS_UNSUBSCRIBE_URL%%\n"
    rewritten = links.rewrite_text_links(text, settings, issue)
    assert links.click_url(settings, issue, ARTICLE) in rewritten and "%%GTS_UNSUBSCRIBE_URL%%" in rewritten


def test_sent_issue_carries_counting_links_and_personal_links_untouched(make_app, smtp_server):
    from newsletter.delivery.deliver import deliver
    from newsletter.feedback.stats import issue_outcomes
    from tests.delivery_fixtures import add_subscribers
    from tests.delivery_fixtures import make_issue as make_full_issue

    app = make_app(click_counts="aggregate", transport=smtp_server.dsn)
    settings = app.extensions["signal_settings"]
    add_subscribers(settings, 2)
    issue = make_full_issue(settings, 1)
    deliver(settings, 1, here=True)
    mails = smtp_server.wait_for(2)
    client = app.test_client()
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', mails[0].html)]
    counting = [h for h in hrefs if h.startswith(f"{settings.base_url}/c/{issue}/")]
    assert len(counting) >= 4  # the four articles, at least
    assert any("/unsubscribe/" in h for h in hrefs)  # personal links are left as they are
    assert not any("/unsubscribe/" in h or "/preferences/" in h for h in counting)
    # both readers got the same counting links: nothing in them tells readers apart
    assert counting == [
        h
        for h in (html.unescape(x) for x in re.findall(r'href="([^"]*)"', mails[1].html))
        if h.startswith(f"{settings.base_url}/c/")
    ]
    destinations = [parse_qs(urlsplit(h).query)["u"][0] for h in counting]
    articles = {f"https://example.org/{slug}/1/{n}" for slug in ("agents", "safety") for n in (0, 1)}
    assert articles <= set(destinations)
    article_link = counting[destinations.index("https://example.org/agents/1/0")]
    first = client.get(path_of(article_link))
    assert first.status_code == 302 and first.headers["Location"] == "https://example.org/agents/1/0"
    assert any(f"{settings.base_url}/c/{issue}/" in link for link in mails[0].links())  # the text part too
    with db.session_scope() as s:
        assert issue_outcomes(s, issue)["clicks"] == 1
