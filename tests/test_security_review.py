"""What was approved is what is sent, and one source cannot overwrite another's
articles (issue 12, item 2).

The issue is approved; then its article is changed by every way an article
can change (its own API client, a feed, a file import, another API token):
the mail that goes out through a real SMTP server carries the approved
text. Separately: external ids and URLs are matched only within their
source, and approving content that changed since the editor looked at it
is refused.
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from newsletter.content import feeds
from newsletter.content.service import source_key
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver
from newsletter.issues.service import (
    IssueError,
    approve_issue,
    assemble_issue,
    changed_since_approval,
    review_digest,
    update_issue,
)
from newsletter.models import Article, Issue
from tests.content_fixtures import article
from tests.editor_fixtures import ADMIN, Browser, add_subscriber, login, make_account
from tests.helpers import RoutedServer

TOKENS = ("token-a", "token-b")


def api(client, token: str, items):
    return client.post("/api/v1/articles", json=items, headers={"Authorization": f"Bearer {token}"})


def rss(guid: str, url: str, title: str) -> str:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>F</title><link>https://f.example/</link>'
        f"<item><title>{title}</title><link>{url}</link><guid>{guid}</guid>"
        "<pubDate>Mon, 02 Mar 2026 06:00:00 GMT</pubDate><category>data</category></item></channel></rss>"
    )


def articles() -> list[Article]:
    with session_scope() as session:
        return list(session.exec(select(Article).order_by(Article.id)).all())


@pytest.fixture
def setup(content_settings, make_app, smtp_server):
    settings = content_settings(api_tokens=TOKENS, transport=smtp_server.dsn, feed_allow_hosts=("127.0.0.1",))
    app = make_app(api_tokens=TOKENS, transport=smtp_server.dsn, feed_allow_hosts=("127.0.0.1",))
    return settings, app, app.test_client()


def test_an_article_changed_after_approval_is_sent_as_approved(setup, smtp_server, tmp_path):
    settings, app, client = setup
    item = article(
        1, "data", title="Approved title", synopsis="Approved words.", url="https://news.example/1"
    )
    assert api(client, "token-a", [item]).status_code == 200
    number = assemble_issue(settings).issue.number
    approve_issue(number, "ed@example.org")
    add_subscriber("reader@example.org")

    # its own client changes it, then a feed and a file try to, then another token
    changed = dict(item, title="Changed title", synopsis="Unreviewed words.", image_url="https://evil.example/x.png",
                   image_alt="x")  # fmt: skip
    assert api(client, "token-a", [changed]).json["updated"] == 1
    server = RoutedServer({"/f": (200, {"Content-Type": "application/rss+xml"},
                                  rss(item["external_id"], item["url"], "Feed title"))})  # fmt: skip
    try:
        report = feeds.poll_feed(settings, server.url + "/f")
    finally:
        server.stop()
    assert report.created == 0 and report.updated == 0 and len(report.skipped) == 1
    path = tmp_path / "a.json"
    path.write_text(json.dumps([dict(item, title="File title")]))
    out = app.test_cli_runner().invoke(args=["articles", "import", str(path)])
    assert "1 skipped" in out.output
    assert api(client, "token-b", [dict(item, title="Other client")]).json["skipped"]

    with session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        assert [a.title for a in changed_since_approval(session, issue)] == ["Changed title"]
    make_account(*ADMIN, "admin")
    admin = app.test_client()
    login(admin, *ADMIN)
    page = admin.get(f"/editor/issues/{number}").get_data(as_text=True)
    assert "Changed by its source since this issue was approved" in page
    # what will be sent is the approved text (the preheader no longer repeats a title: issue 19's {inside})
    assert "Approved title" in admin.get(f"/editor/issues/{number}/preview").get_data(as_text=True)

    counts = deliver(settings, number, here=True)
    assert counts.sent == 1
    [mail] = smtp_server.wait_for(1)
    assert "Approved title" in mail.text and "Approved words." in mail.text
    assert "Changed title" not in mail.text and "Unreviewed" not in mail.text + mail.html
    assert "evil.example" not in mail.html
    archive = client.get(f"/issues/{number}").get_data(as_text=True)
    assert "Approved title" in archive and "Changed title" not in archive


def test_editing_takes_the_new_version_and_needs_a_new_approval(setup):
    settings, app, client = setup
    item = article(1, "data", title="Approved title")
    api(client, "token-a", [item])
    number = assemble_issue(settings).issue.number
    approve_issue(number, "ed@example.org")
    api(client, "token-a", [dict(item, title="Newer title")])
    preview = client.application.test_client()
    issue = update_issue(number, preheader="A new preheader")
    assert issue.status == "draft"
    with session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        assert changed_since_approval(session, issue) == []  # no snapshot any more: it shows the live row
    from newsletter.issues.preview import preview_issue

    assert "Newer title" in preview_issue(settings, number) and preview is not None
    approve_issue(number, "ed@example.org")
    api(client, "token-a", [dict(item, title="Newest title")])
    assert "Newer title" in preview_issue(settings, number)


def test_approval_refuses_content_that_changed_since_the_editor_looked(setup):
    settings, app, client = setup
    item = article(1, "data", title="Seen title")
    api(client, "token-a", [item])
    number = assemble_issue(settings).issue.number
    make_account(*ADMIN, "admin")
    editor = app.test_client()
    login(editor, *ADMIN)
    browser = Browser(editor)
    page = browser.get(f"/editor/issues/{number}").get_data(as_text=True)
    assert 'name="seen"' in page
    api(client, "token-a", [dict(item, title="Swapped after the editor looked")])
    refused = browser.post(
        f"/editor/issues/{number}/approve",
        data={"seen": page.split('name="seen" value="')[1].split('"')[0]},
        follow_redirects=True,
    )
    assert "changed since you opened it" in refused.get_data(as_text=True)
    with session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        assert issue.status == "draft"
        seen = review_digest(session, issue)
    with pytest.raises(IssueError, match="changed since you opened it"):
        approve_issue(number, "ed", seen="0" * 32)
    assert approve_issue(number, "ed", seen=seen).status == "approved"


def test_external_ids_and_urls_are_scoped_to_their_source(setup, tmp_path):
    settings, app, client = setup
    mine = article(1, "data", title="A's article", url="https://a.example/1")
    assert api(client, "token-a", [mine]).json["created"] == 1

    # another token with the same external id: its own article, A's untouched
    theirs = dict(mine, title="B's article", url="https://b.example/1")
    answer = api(client, "token-b", [theirs]).json
    assert answer["created"] == 1 and answer["skipped"] == []
    # another token with A's URL and no id, or a new id: skipped, not an update
    for item in (
        dict(mine, external_id=None, title="B again"),
        dict(mine, external_id="b-9", title="B again"),
    ):
        item = {k: v for k, v in item.items() if v is not None}
        answer = api(client, "token-b", [item])
        assert answer.status_code == 200 and answer.json["created"] == answer.json["updated"] == 0
        assert answer.json["skipped"][0]["message"].startswith("article ")
    # a feed with A's id and URL
    server = RoutedServer({"/f": (200, {"Content-Type": "application/rss+xml"},
                                  rss(mine["external_id"], mine["url"], "Feed's title"))})  # fmt: skip
    try:
        assert feeds.poll_feed(settings, server.url + "/f").skipped
    finally:
        server.stop()
    # a file with A's id and URL
    path = tmp_path / "a.json"
    path.write_text(json.dumps([dict(mine, title="File's title")]))
    app.test_cli_runner().invoke(args=["articles", "import", str(path)])

    stored = {(a.source_key, a.external_id): a.title for a in articles()}
    assert stored == {
        (source_key("api", "token-a"), "a-1"): "A's article",
        (source_key("api", "token-b"), "a-1"): "B's article",
    }
    # each client still updates its own
    assert api(client, "token-a", [dict(mine, title="A, edited")]).json["updated"] == 1
    assert api(client, "token-b", [dict(theirs, title="B, edited")]).json["updated"] == 1
    assert sorted(a.title for a in articles()) == ["A, edited", "B, edited"]
