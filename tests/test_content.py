"""Articles in: sanitising, upsert, the JSON API, file import and RSS/Atom feeds over real HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from http.server import ThreadingHTTPServer

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.content import feeds
from newsletter.content.sanitise import InvalidUrl, check_url, markdown_to_html
from newsletter.content.service import canonical_url, upsert_articles
from newsletter.db import session_scope
from newsletter.models import Article, ArticleTag, FeedState, Tag
from tests.content_fixtures import T0, article
from tests.helpers import LoopbackServer, QuietHandler

AUTH = {"Authorization": "Bearer test-token"}


# --- sanitising -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>x</script>", "vbscript:x", "ftp://x.org/",
     "/relative/path", "https://", "java\tscript:alert(1)", "https://user:pw@example.com/", " https://a b.org"],
)  # fmt: skip
def test_only_http_urls_are_accepted(url):
    with pytest.raises(InvalidUrl) as info:
        check_url(url)
    assert "url" in str(info.value)


def test_urls_are_normalised_and_quotes_encoded():
    assert check_url('HTTPS://Example.COM/a?q="x"\'<y>') == "https://example.com/a?q=%22x%22%27%3Cy%3E"


@pytest.mark.parametrize("filler", ["a", '"', "'", "<", ">"])
def test_a_url_that_grows_when_encoded_still_fits_its_column_or_is_refused(filler):
    """The column holds 2,000 characters: what is stored (after encoding), not
    what was sent, must fit — PostgreSQL refuses a longer value with a 500."""
    base = "https://example.com/?q="
    fits = base + filler * (2000 - len(base))
    if filler == "a":
        assert check_url(fits) == fits
    else:
        with pytest.raises(InvalidUrl, match="longer than 2000"):
            check_url(fits)
    short = base + filler * 100
    assert len(check_url(short)) <= 2000


def test_an_article_url_that_grows_when_made_canonical_is_refused_clearly():
    """``canonical_url`` adds "/" to an empty path and re-encodes the query:
    a 2,000-character URL may come out longer, and is refused, not truncated."""
    with pytest.raises(InvalidUrl, match="once normalised"):
        canonical_url("https://" + "0" * 1992)
    with pytest.raises(InvalidUrl, match="once normalised"):
        canonical_url("https://example.org/?q=" + "é" * 1000)  # re-encoded as %C3%A9
    assert canonical_url("https://" + "0" * 1991) == "https://" + "0" * 1991 + "/"


def test_markdown_raw_html_is_shown_as_text_and_links_are_filtered():
    html = markdown_to_html(
        "Hi <script>alert(1)</script> <img src=x onerror=alert(1)> **bold** [bad](javascript:alert(1)) [ok](https://ok.org)"
    )
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x" in html  # visible, inert text
    assert "<strong>bold</strong>" in html
    assert 'href="javascript' not in html
    assert '<a href="https://ok.org" rel="noopener noreferrer nofollow">ok</a>' in html


@pytest.mark.parametrize(
    "source",
    [
        "&#37;&#37;GTS_UNSUBSCRIBE_URL&#37;&#37;",
        "%%GTS&#95;GREETING%%",
        "&#x25;%GTS_PREFERENCES_URL%&#x25;",
        "%&#37;GTS_GREETING%%",
    ],
)
def test_markdown_character_references_cannot_spell_a_placeholder(source):
    html = markdown_to_html(f"Text {source} and **more**")
    assert "%%GTS_" not in html and "GTS_" in html  # the words stay, defused


# --- upsert -------------------------------------------------------------------------


def test_upsert_is_idempotent_by_external_id_and_url(content_settings):
    first = upsert_articles([article(1, ["data", "New Topic"]), article(2, "data")], "api")
    assert (first.created, first.updated, first.errors) == (2, 0, [])
    again = upsert_articles([article(1, ["data"], title="Renamed"), article(2, "data")], "api")
    assert (again.created, again.updated) == (0, 2)
    by_url = upsert_articles(
        [{"url": "https://EXAMPLE.com/posts/3?utm_source=x#frag", "title": "No id", "tags": ["data"]}], "api"
    )
    same = upsert_articles([{"url": "https://example.com/posts/3", "title": "No id again"}], "api")
    assert by_url.created == 1 and same.updated == 1 and same.ids == by_url.ids
    with session_scope() as session:
        assert len(session.exec(select(Article)).all()) == 3
        renamed = session.exec(select(Article).where(Article.external_id == "a-1")).one()
        assert renamed.title == "Renamed"
        tags = session.exec(
            select(Tag.slug).join(ArticleTag).where(ArticleTag.article_id == renamed.id)
        ).all()
        assert tags == ["data"]  # the tag list is replaced, not merged
        new_topic = session.exec(select(Tag).where(Tag.slug == "new-topic")).one()
        assert new_topic.name == "New Topic" and new_topic.is_section


def test_invalid_items_are_reported_and_valid_ones_kept(content_settings):
    report = upsert_articles(
        [
            article(1, "data"),
            {"title": "", "url": "javascript:alert(1)"},
            {
                "title": "x",
                "url": "https://x.org",
                "reading_minutes": "ten",
                "published_at": "yesterday",
                "bogus": 1,
            },
            "not an object",
            article(5, "data", image_url="data:image/png;base64,AAAA"),
        ],
        "api",
    )
    assert report.created == 1
    errors = dict(report.errors)
    assert set(errors) == {1, 2, 3, 4}
    assert "title is required" in errors[1] and "http(s)" in errors[1]
    assert "reading_minutes" in errors[2] and "ISO 8601" in errors[2] and "bogus" in errors[2]
    assert "image_url must be an http(s) URL, not data:" in errors[4]


def test_hostile_text_is_stored_harmlessly(content_settings):
    hostile = '<img src=x onerror=alert(1)>"><script>alert(1)</script>'
    report = upsert_articles(
        [
            article(
                1, "data", title=hostile, synopsis=hostile + " %%GTS_UNSUBSCRIBE_URL%%", author="A\r\nBcc: x"
            )
        ],
        "api",
    )
    assert report.created == 1
    with session_scope() as session:
        stored = session.exec(select(Article)).one()
    assert stored.title == hostile  # kept as text; escaped whenever shown
    assert "<script" not in stored.synopsis_html and "<img" not in stored.synopsis_html
    assert "%%GTS_" not in stored.synopsis  # cannot spell a per-recipient placeholder
    assert "\n" not in stored.author and "\r" not in stored.author


# --- API ------------------------------------------------------------------------------


def test_api_requires_a_token(content_settings, make_app):
    client = make_app().test_client()
    assert client.post("/api/v1/articles", json=article(1, "data")).status_code == 401
    assert (
        client.post(
            "/api/v1/articles", json=article(1, "data"), headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    closed = make_app(api_tokens=()).test_client()
    assert closed.post("/api/v1/articles", json=article(1, "data"), headers=AUTH).status_code == 403


def test_api_single_list_partial_and_invalid(content_settings, make_app):
    client = make_app().test_client()
    one = client.post("/api/v1/articles", json=article(1, "data"), headers=AUTH)
    assert one.status_code == 200 and one.json["created"] == 1
    many = client.post("/api/v1/articles", json=[article(1, "data"), article(2, "data")], headers=AUTH)
    assert many.status_code == 200 and (many.json["created"], many.json["updated"]) == (1, 1)
    partial = client.post(
        "/api/v1/articles", json=[article(3, "data"), {"title": "x", "url": "data:x"}], headers=AUTH
    )
    assert partial.status_code == 207 and partial.json["errors"][0]["index"] == 1
    bad = client.post("/api/v1/articles", json=[{"url": "javascript:alert(1)"}], headers=AUTH)
    assert bad.status_code == 400 and bad.json["created"] == 0
    assert client.post("/api/v1/articles", data="title=x", headers=AUTH).status_code == 415
    assert client.post("/api/v1/articles", json="just a string", headers=AUTH).status_code == 400


def test_api_is_in_the_openapi_document(content_settings, make_app):
    doc = make_app().test_client().get("/api/v1/openapi.json").json
    assert "post" in doc["paths"]["/articles"]
    assert "Article" in doc["components"]["schemas"]


# --- JSON file import ---------------------------------------------------------------


def test_cli_import_file(content_settings, make_app, tmp_path):
    path = tmp_path / "articles.json"
    path.write_text(json.dumps([article(1, "data"), {"title": "bad", "url": "javascript:x"}]))
    runner = make_app().test_cli_runner()
    out = runner.invoke(args=["articles", "import", str(path)])
    assert out.exit_code == 0, out.output
    assert "1 created, 0 updated, 1 rejected" in out.output
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = runner.invoke(args=["articles", "import", str(broken)])
    assert out.exit_code == 1 and "not valid UTF-8 JSON" in out.output


# --- feeds over real HTTP ----------------------------------------------------------------

RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Example</title><link>https://example.org/</link>
<item><title>Agents &amp; tools</title><link>https://example.org/agents</link><guid>urn:1</guid>
<description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;&lt;/p&gt;</description>
<category>AI Agents</category><pubDate>Sun, 01 Mar 2026 10:00:00 GMT</pubDate><author>x@example.org (Ana)</author></item>
<item><title>Bad link</title><link>javascript:alert(1)</link><guid>urn:2</guid></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title><id>urn:feed</id><updated>2026-03-01T00:00:00Z</updated>
<entry><title>Data notes</title><id>urn:atom:1</id><link href="https://example.net/data"/>
<updated>2026-03-01T09:00:00Z</updated><summary>Plain summary</summary><category term="data"/></entry>
</feed>"""


class FeedServer(LoopbackServer):
    """A real HTTP server serving feeds with ETag / Last-Modified and 304 answers."""

    def __init__(self):
        self.requests: list[dict] = []
        self.bodies = {"/rss": (RSS, "application/rss+xml"), "/atom": (ATOM, "application/atom+xml")}
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if self.path not in server.bodies:
                    self.reply(404)
                    return
                body, kind = server.bodies[self.path]
                etag = f'"{hash(body) & 0xFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.reply(304)
                    return
                headers = {
                    "Content-Type": kind,
                    "ETag": etag,
                    "Last-Modified": "Sun, 01 Mar 2026 10:00:00 GMT",
                }
                self.reply(200, headers, body.encode())

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def feed_server():
    server = FeedServer()
    yield server
    server.stop()


LOCAL = ("127.0.0.1",)  # the test's feed server is on loopback, which feeds may not reach by default


def test_rss_feed_import_with_conditional_get(content_settings, feed_server):
    settings = content_settings(feed_allow_hosts=LOCAL)
    url = feed_server.url + "/rss"
    report = feeds.poll_feed(settings, url)
    assert report.created == 1 and len(report.errors) == 1 and "http(s)" in report.errors[0][1]
    with session_scope() as session:
        stored = session.exec(select(Article)).one()
        state = session.get(FeedState, url)
        tag = session.exec(select(Tag).where(Tag.slug == "ai-agents")).one()
    assert stored.title == "Agents & tools" and stored.external_id == "urn:1" and stored.source == "feed"
    assert "<script" not in stored.synopsis_html and "Hello world" in stored.synopsis
    assert stored.published_at.isoformat().startswith("2026-03-01T10:00:00")
    assert tag.is_section  # existed already as a section; categories map to tags by slug
    assert state.etag and state.last_modified and state.last_error == ""

    again = feeds.poll_feed(settings, url)
    assert again.not_modified
    assert feed_server.requests[-1]["if-none-match"] == state.etag
    assert feed_server.requests[-1]["if-modified-since"] == state.last_modified
    assert "GET-THE-SIGNAL" in feed_server.requests[-1]["user-agent"]


def test_atom_feed_and_new_categories_are_not_sections(content_settings, feed_server):
    settings = content_settings(feed_allow_hosts=LOCAL)
    feed_server.bodies["/atom"] = (ATOM.replace('term="data"', 'term="Gadgets"'), "application/atom+xml")
    report = feeds.poll_feed(settings, feed_server.url + "/atom", tags=("research",))
    assert report.created == 1
    with session_scope() as session:
        gadgets = session.exec(select(Tag).where(Tag.slug == "gadgets")).one()
        linked = session.exec(select(Tag.slug).join(ArticleTag).order_by(Tag.slug)).all()
    assert not gadgets.is_section
    assert linked == ["gadgets", "research"]


def test_feed_errors_are_recorded_and_do_not_stop_other_feeds(content_settings, feed_server):
    settings = content_settings(
        feeds=(feed_server.url + "/missing", feed_server.url + "/atom"), feed_allow_hosts=LOCAL
    )
    results = feeds.poll_configured_feeds(settings)
    assert "HTTP 404" in results[feed_server.url + "/missing"]
    assert results[feed_server.url + "/atom"].created == 1
    with session_scope() as session:
        assert "404" in session.get(FeedState, feed_server.url + "/missing").last_error


def test_not_a_feed_is_a_clear_error(content_settings, feed_server):
    feed_server.bodies["/html"] = ("<html><body>hello</body></html>", "text/html")
    with pytest.raises(feeds.FeedError):
        feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), feed_server.url + "/html")


def test_cli_feed_import(content_settings, make_app, feed_server):
    runner = make_app(feed_allow_hosts=LOCAL).test_cli_runner()
    out = runner.invoke(args=["articles", "import", "--feed", feed_server.url + "/atom"])
    assert out.exit_code == 0 and "1 created" in out.output
    out = runner.invoke(args=["articles", "import", "--feed", feed_server.url + "/atom"])
    assert "not modified" in out.output
    out = runner.invoke(args=["articles", "import", "--feed", "http://127.0.0.1:9/none"])
    assert out.exit_code == 1 and "cannot fetch" in out.output


def test_demo_seed_is_idempotent_and_assembles(content_settings):
    from newsletter.demo import seed_demo
    from newsletter.issues.service import assemble_issue
    from newsletter.models import Editor, Issue, Subscriber

    settings = content_settings.default
    first = seed_demo(settings)
    second = seed_demo(settings)
    assert any("20 sample articles" in line for line in first)
    assert any("Issue 001" in line and "draft" in line for line in first)
    assert any("already an open draft" in line for line in second)
    assert [line for line in first if "editor login" in line] == [
        line for line in second if "editor login" in line
    ]
    with session_scope() as session:
        assert len(session.exec(select(Article)).all()) == 20
        assert len(session.exec(select(Issue)).all()) == 1
        assert len(session.exec(select(Editor)).all()) == 1
        assert {s.status for s in session.exec(select(Subscriber)).all()} == {"active"}
    clock.advance(timedelta(minutes=1))
    result = assemble_issue(settings)
    assert result.issue is not None and not result.created  # the demo's draft is the open one
    assert T0 <= clock.now()
