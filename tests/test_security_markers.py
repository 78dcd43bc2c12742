"""Per-reader markers cannot be forged (issue 12, item 1), by class: every
article field and the editor's fields, every encoding, every source (the
JSON API, a feed over real HTTP, a file through the CLI, the editor's form).

For each source × encoding the hostile text goes into one field per article,
and the test checks, in order:

1. each field that was stored is flagged by the content lint, by name;
2. approving or scheduling the issue is refused, and so is sending it when
   it was approved some other way (an approval from before the check);
3. rendering it anyway, the way a send freezes it (with and without click
   counting), a reader's unsubscribe and preferences links appear exactly
   where the template puts them and nowhere else: the markers carry a nonce
   no stored text can know.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from xml.sax.saxutils import escape as xml_escape

import pytest
from sqlalchemy import update
from sqlmodel import select

from newsletter import tokens
from newsletter.content.markers import marker_like
from newsletter.db import session_scope
from newsletter.delivery.send import NotSendable, start_send
from newsletter.issues.service import (
    IssueError,
    approve_issue,
    assemble_issue,
    content_problems,
    schedule_issue,
    update_issue,
)
from newsletter.models import Article, ArticleTag, Delivery, Issue, Tag
from newsletter.rendering import placeholders
from newsletter.rendering.issue import freeze_issue
from newsletter.rendering.personalise import personalise
from tests.content_fixtures import article
from tests.editor_fixtures import ADMIN, Browser, login, make_account
from tests.helpers import RoutedServer

# The same attack in every encoding a stage between the source and a reader could decode.
VARIANTS = {
    "plain": "%%GTS_UNSUBSCRIBE_URL%%",
    "greeting": "%%GTS_GREETING%%",
    "html-decimal": "&#37;&#37;GTS_PREFERENCES_URL&#37;&#37;",
    "html-hex": "&#x25;&#X25;GTS&#x5f;UNSUBSCRIBE_URL&#x25;&#x25;",
    "html-named": "&percnt;&percnt;GTS&lowbar;PREFERENCES&lowbar;URL&percnt;&percnt;",
    "percent": "%25%25GTS_UNSUBSCRIBE_URL%25%25",
    "percent-twice": "%2525%2525GTS%255FPREFERENCES_URL%2525%2525",
    "markdown-escapes": "\\%\\%GTS\\_UNSUBSCRIBE\\_URL\\%\\%",
    "full-width": "％％ＧＴＳ＿ＵＮＳＵＢＳＣＲＩＢＥ＿ＵＲＬ％％",
    "invisible": "%%G\u200bTS_UNSUB\u00adSCRIBE_URL%%",
    "lower-case": "%%gts_preferences_url%%",
    "guessed-nonce": "%%GTS_" + "0" * 32 + "_UNSUBSCRIBE_URL%%",
    "neutralised": "%%\u2060GTS_PREFERENCES_URL%%",
    "split-by-markup": "%%GTS_<b></b>UNSUBSCRIBE_URL%%",
}
SOURCES = ("api", "file", "feed")
FIELDS = ("title", "url", "url query", "image_url", "image_alt", "synopsis", "synopsis link", "author", "tag")
FEED_FIELDS = ("title", "url", "url query", "synopsis", "author", "tag")
STORED_AS = {"url query": "url", "synopsis link": "synopsis", "tag": "tag"}  # the column the field lands in
READER = 4242


@pytest.fixture
def hostile_settings(content_settings):
    # every article fits in one issue; the feed server is on loopback
    return content_settings(section_limit=40, issue_limit=60, feed_allow_hosts=("127.0.0.1",))


def hostile_items(value: str, fields=FIELDS) -> dict[str, dict]:
    """One article per field, the hostile value in that field only (tag "data" is a section)."""
    make = {
        "title": lambda n: article(n, "data", title=f"Title {value}"),
        "url": lambda n: article(n, "data", url=f"https://evil.example/{value}"),
        "url query": lambda n: article(n, "data", url=f"https://evil.example/go?to={value}"),
        "image_url": lambda n: article(
            n, "data", image_url=f"https://img.example/{value}.png", image_alt="A picture"
        ),
        "image_alt": lambda n: article(
            n, "data", image_url="https://img.example/a.png", image_alt=f"Alt {value}"
        ),
        "synopsis": lambda n: article(n, "data", synopsis=f"Read this: {value}"),
        "synopsis link": lambda n: article(n, "data", synopsis=f"[Read](https://x.example/?u={value})"),
        "author": lambda n: article(n, "data", author=f"Ana {value}"),
        "tag": lambda n: article(n, ["data", f"tag {value}"]),
    }
    return {name: make[name](n) for n, name in enumerate(fields, start=1)}


def ingest_api(make_app, settings, items, tmp_path):
    client = make_app(section_limit=40, issue_limit=60).test_client()
    response = client.post(
        "/api/v1/articles", json=list(items.values()), headers={"Authorization": "Bearer test-token"}
    )
    assert response.status_code in (200, 207, 400), response.json


def ingest_file(make_app, settings, items, tmp_path):
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(list(items.values())), encoding="utf-8")
    runner = make_app(section_limit=40, issue_limit=60).test_cli_runner()
    runner.invoke(args=["articles", "import", str(path)])


def rss(items: dict[str, dict]) -> str:
    entries = []
    for item in items.values():
        when = datetime.fromisoformat(item["published_at"]).astimezone(UTC)
        categories = "".join(f"<category>{xml_escape(t)}</category>" for t in item["tags"])
        entries.append(
            f"<item><title>{xml_escape(item['title'])}</title><link>{xml_escape(item['url'])}</link>"
            f"<guid>{item['external_id']}</guid><description>{xml_escape(item['synopsis'])}</description>"
            f"<author>{xml_escape(item['author'])}</author>{categories}"
            f"<pubDate>{when:%a, %d %b %Y %H:%M:%S} GMT</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Hostile</title>'
        f"<link>https://evil.example/</link>{''.join(entries)}</channel></rss>"
    )


def ingest_feed(make_app, settings, items, tmp_path):
    from newsletter.content import feeds

    server = RoutedServer({"/feed": (200, {"Content-Type": "application/rss+xml"}, rss(items))})
    try:
        feeds.poll_feed(settings, server.url + "/feed")
    finally:
        server.stop()


INGEST = {"api": ingest_api, "file": ingest_file, "feed": ingest_feed}


def stored() -> dict[str, tuple[Article, list[str]]]:
    """Every article by external id (a feed's relative guids are resolved
    against the feed's URL: keyed by their last segment), with its tag names."""
    with session_scope() as session:
        tags = {}
        for article_id, name in session.exec(select(ArticleTag.article_id, Tag.name).join(Tag)).all():
            tags.setdefault(article_id, []).append(name)
        return {
            a.external_id.rsplit("/", 1)[-1]: (a, tags.get(a.id, []))
            for a in session.exec(select(Article)).all()
        }


def landed(article: Article, tags: list[str], field: str) -> list[str]:
    """What of the hostile field was stored (ingestion may have cut or decoded it)."""
    column = STORED_AS.get(field, field)
    return tags if column == "tag" else [getattr(article, column) or ""]


class Attributes(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.found = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found += [(tag, name, value or "") for name, value in attrs]


def assert_personal_links_only_in_the_footer(settings, render) -> None:
    """One reader's message from ``render``: each personal link appears once in
    the HTML and once in the text — the template's own — and nowhere else."""
    message = personalise(render, settings, subscriber_id=READER, email="reader@example.org", name="Rea")
    unsubscribe = tokens.make_token(settings.secret_key, "unsubscribe", READER)
    preferences = tokens.make_token(settings.secret_key, "preferences", READER)
    for token, url, label in (
        (unsubscribe, message.unsubscribe_url, "Unsubscribe"),
        (preferences, message.preferences_url, "Change your topics"),
    ):
        assert message.html.count(token) == 1 and message.text.count(token) == 1, label
        holding = [
            (tag, name, value) for tag, name, value in Attributes(message.html).found if token in value
        ]
        assert holding == [("a", "href", url)], holding
        assert f'<a href="{url}">{label}</a>' in message.html
    assert placeholders.PREFIX not in message.html and placeholders.PREFIX not in message.text
    assert message.html.count("Hi Rea,") == 1


def check_issue(settings, number: int, expect_flagged: set[str]) -> str:
    """Run the three checks; returns how the forced render ended ("frozen" or "refused")."""
    with session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        flagged = {p.message.split(" holds ")[0] for p in content_problems(session, issue)}
    missing = expect_flagged - flagged
    assert not missing, f"not flagged: {sorted(missing)}; flagged: {sorted(flagged)}"
    if expect_flagged:
        refuse_approval_and_sending(settings, number)
    outcomes = set()
    for click_counts in ("off", "aggregate"):  # rendered anyway, as a send freezes it
        frozen_settings = replace(settings, click_counts=click_counts)
        with session_scope() as session:
            issue = session.exec(select(Issue).where(Issue.number == number)).one()
            try:
                render = freeze_issue(session, issue, frozen_settings)[""]
            except placeholders.MarkerError:
                outcomes.add("refused")  # text spelling the marker prefix: never frozen, never sent
            else:
                assert_personal_links_only_in_the_footer(frozen_settings, render)
                outcomes.add("frozen")
            session.rollback()
    assert len(outcomes) == 1
    return outcomes.pop()


def refuse_approval_and_sending(settings, number: int) -> None:
    with pytest.raises(IssueError, match="cannot be approved"):
        approve_issue(number, "ed@example.org")
    with pytest.raises(IssueError, match="cannot be approved"):
        schedule_issue(number, datetime.now(UTC) + timedelta(days=30), by="ed@example.org")
    with session_scope() as session:
        assert session.exec(select(Issue.status).where(Issue.number == number)).one() == "draft"

    # approved some other way (before approval checked content): the send is refused
    with session_scope() as session:
        session.execute(update(Issue).where(Issue.number == number).values(status="approved"))
    with pytest.raises(NotSendable, match="cannot be sent"):
        start_send(settings, number)
    with session_scope() as session:
        assert session.exec(select(Issue.status).where(Issue.number == number)).one() == "approved"
        assert session.exec(select(Delivery)).all() == []
        session.execute(update(Issue).where(Issue.number == number).values(status="draft"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("source", SOURCES)
def test_no_field_no_encoding_no_source_makes_a_marker(hostile_settings, make_app, tmp_path, source, variant):
    settings = hostile_settings
    value = VARIANTS[variant]
    assert marker_like(value)
    fields = FEED_FIELDS if source == "feed" else FIELDS
    items = hostile_items(value, fields)
    INGEST[source](make_app, settings, items, tmp_path)
    kept = stored()
    expected = set()
    for name, item in items.items():
        if item["external_id"] not in kept:
            continue  # refused at the door (an invalid URL, say): nothing to forge with
        found, tags = kept[item["external_id"]]
        if any(marker_like(value) for value in landed(found, tags, name)):
            expected.add(f"article {found.id} {STORED_AS.get(name, name)}")
    assert expected, "no hostile text was stored: the test would prove nothing"
    number = assemble_issue(settings).issue.number
    check_issue(settings, number, expected)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_editors_fields_cannot_make_a_marker(hostile_settings, make_app, variant):
    settings = hostile_settings
    from tests.content_fixtures import add_articles

    add_articles(settings, [article(1, "data")])
    number = assemble_issue(settings).issue.number
    app = make_app()
    make_account(*ADMIN, "admin")
    client = app.test_client()
    assert login(client, *ADMIN).status_code == 302
    browser = Browser(client)
    value = VARIANTS[variant]
    fields = {
        "theme": f"Theme {value}",
        "title": f"Title {value}",
        "subject": f"Subject {value}",
        "preheader": f"Pre {value}",
        "intro": f"Intro {value}",
    }
    browser.get(f"/editor/issues/{number}")
    saved = browser.post(f"/editor/issues/{number}", data=fields)
    assert saved.status_code in (302, 400)
    update_issue(number, **fields)  # the service the form calls, in case the form refused a field
    preview = browser.get(f"/editor/issues/{number}/preview").get_data(as_text=True)
    assert "personal-link marker" in preview  # the lint, shown with the preview
    browser.get(f"/editor/issues/{number}")
    refused = browser.post(f"/editor/issues/{number}/approve", follow_redirects=True)
    assert "cannot be approved" in refused.get_data(as_text=True)
    assert check_issue(settings, number, {f"the issue's {name}" for name in fields}) == "frozen"


def test_markers_have_a_fresh_nonce_per_render_and_the_render_must_hold_exactly_the_templates(
    hostile_settings,
):
    settings = hostile_settings
    from tests.content_fixtures import add_articles

    add_articles(settings, [article(1, "data")])
    number = assemble_issue(settings).issue.number
    with session_scope() as session:
        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        from newsletter.rendering.issue import render_variant

        first, second = (render_variant(session, issue, "", settings) for _ in range(2))
    assert first.nonce != second.nonce and len(first.nonce) == 32
    for render in (first, second):
        counts = placeholders.found(render.nonce, render.html)
        assert counts == {"GREETING": 1, "UNSUBSCRIBE_URL": 1, "PREFERENCES_URL": 1}
        assert placeholders.found(render.nonce, render.text) == counts
        assert second.nonce not in first.html  # one render's markers mean nothing in another

    printed = placeholders.found(first.nonce, first.html)
    extra = first.html.replace("</body>", placeholders.marker(first.nonce, "UNSUBSCRIBE_URL") + "</body>")
    with pytest.raises(placeholders.MarkerError, match="template printed"):
        placeholders.verify(first.nonce, extra, printed, "HTML")
    missing = first.html.replace(placeholders.marker(first.nonce, "PREFERENCES_URL"), "", 1)
    with pytest.raises(placeholders.MarkerError, match="template printed"):
        placeholders.verify(first.nonce, missing, printed, "HTML")
    stray = first.html.replace("</body>", "%%GTS_nothing%%</body>")
    with pytest.raises(placeholders.MarkerError, match="reads as a marker"):
        placeholders.verify(first.nonce, stray, printed, "HTML")

    legacy = first.model_copy(update={"nonce": ""})  # frozen before markers had nonces
    with pytest.raises(placeholders.MarkerError, match="no marker nonce"):
        personalise(legacy, settings, subscriber_id=1)


@pytest.mark.parametrize(
    "text",
    [
        "An ordinary synopsis about 100% growth and GTS (a ticker).",
        "Email me at ana@example.org, 50%% off",
        "https://example.com/a%20b?x=%41",
        "Greetings, preferences, unsubscribe: words are fine.",
    ],
)
def test_ordinary_text_is_not_marker_like(text):
    assert not marker_like(text)
