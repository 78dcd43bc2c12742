"""Feeds as the web writes them, served by a local HTTP server with the real
headers: the charset of Content-Type (KOI8-R and Shift_JIS feeds without an
XML encoding declaration), relative links against the feed's final URL after
a redirect, HTML and XHTML titles, untitled items (Mastodon, micro.blog),
author email addresses, plain text that must not become Markdown, and feeds
that parse with a warning but have no entries."""

from __future__ import annotations

from http.server import ThreadingHTTPServer

import pytest
from sqlmodel import select

from newsletter.content import feeds
from newsletter.content.sanitise import escape_markdown, html_text, markdown_to_html, text_to_html
from newsletter.db import session_scope
from newsletter.models import Article, FeedState
from tests.helpers import LoopbackServer, QuietHandler

LOCAL = ("127.0.0.1",)  # the test feed server is on loopback, which feeds may not reach by default


class Served(LoopbackServer):
    """Answers each path with the bytes and headers set in ``routes``; a
    ``("redirect", target)`` route answers 301 with that Location."""

    def __init__(self):
        self.routes: dict[str, tuple] = {}
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                route = server.routes.get(self.path)
                if route is None:
                    self.reply(404)
                elif route[0] == "redirect":
                    self.reply(301, {"Location": route[1], "Content-Length": "0"})
                else:
                    body, headers = route
                    self.reply(200, headers, body)

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    def serve(self, path: str, body: str | bytes, content_type: str = "application/rss+xml") -> str:
        """Serve ``body`` at ``path`` with that Content-Type; returns the URL."""
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = (data, {"Content-Type": content_type})
        return self.url + path


@pytest.fixture
def web():
    server = Served()
    yield server
    server.stop()


def articles() -> dict[str, Article]:
    with session_scope() as session:
        return {a.external_id: a for a in session.exec(select(Article)).all()}


def rss(items: str, *, declaration: str = '<?xml version="1.0"?>') -> str:
    return (
        f'{declaration}\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>Blog</title><link>https://blog.example/</link>{items}</channel></rss>"
    )


# --- the charset of the HTTP Content-Type ----------------------------------------------


@pytest.mark.parametrize(
    "charset, content_type, title, text",
    [
        ("koi8-r", "application/rss+xml; charset=KOI8-R", "Привет, мир", "Новости недели: агенты и данные."),
        (
            "shift_jis",
            "text/xml; charset=Shift_JIS",
            "日本語のタイトル",
            "今週のニュース：エージェントとデータ。",
        ),
        ("windows-1252", "application/rss+xml; charset=windows-1252", "Café “naïve” — €5", "Déjà vu."),
        ("iso-8859-7", "application/xml; charset=ISO-8859-7", "Καλημέρα κόσμε", "Νέα της εβδομάδας."),
    ],
)
def test_the_http_charset_decides_how_a_feed_without_declaration_is_read(
    content_settings, web, charset, content_type, title, text
):
    body = rss(
        f'<item><title>{title}</title><link>https://blog.example/1</link><guid isPermaLink="false">g-{charset}</guid>'
        f"<description>{text}</description></item>",
        declaration="",  # no <?xml … encoding="…"?>: only the HTTP header says how to read the bytes
    ).encode(charset)
    web.serve("/feed", body, content_type)
    report = feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/feed")
    assert report.created == 1 and report.errors == []
    stored = articles()[f"g-{charset}"]
    assert stored.title == title
    assert html_text(stored.synopsis_html) == text


def test_relative_links_resolve_against_the_final_url_after_a_redirect(content_settings, web):
    body = rss(
        '<item><title>Relative</title><link>posts/1</link><guid isPermaLink="false">rel-1</guid>'
        '<description>&lt;p&gt;See &lt;a href="../about"&gt;about&lt;/a&gt; and '
        '&lt;a href="/tags/x"&gt;#x&lt;/a&gt;&lt;/p&gt;</description></item>'
    ).encode()
    web.routes["/old-feed"] = ("redirect", "/blog/feed/index.xml")
    web.serve("/blog/feed/index.xml", body, "application/rss+xml; charset=utf-8")
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/old-feed")
    stored = articles()["rel-1"]
    assert stored.url == f"{web.url}/blog/feed/posts/1"
    assert f'href="{web.url}/blog/about"' in stored.synopsis_html
    assert f'href="{web.url}/tags/x"' in stored.synopsis_html


# --- titles, untitled items, authors --------------------------------------------------------

WORDPRESS = rss(
    # WordPress writes & as &#038; in titles, and HTML in titles escaped
    '<item><title>Q&#038;A</title><link>https://blog.example/qa</link><guid isPermaLink="false">wp-1</guid>'
    "<description>One</description><dc:creator>Jane Doe</dc:creator></item>"
    "<item><title>Q&amp;amp;A with &lt;em&gt;you&lt;/em&gt;</title><link>https://blog.example/qa2</link>"
    '<guid isPermaLink="false">wp-2</guid><description>Two</description><author>jane@example.org (Jane Doe)</author></item>'
)
ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>urn:a</id><updated>2026-03-01T00:00:00Z</updated>
<entry><id>urn:atom-1</id><title type="html">Q&amp;amp;A &lt;em&gt;now&lt;/em&gt; &lt;script&gt;x()&lt;/script&gt;</title>
<link href="https://blog.example/a1"/><updated>2026-03-01T00:00:00Z</updated>
<summary type="text">Type [a link](http://evil.example) and &lt;b&gt;tags&lt;/b&gt; *as text*</summary>
<author><name>Ann Lee</name><email>ann@example.org</email></author>
<author><name>Bo</name></author></entry>
<entry><id>urn:atom-2</id><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">X <em>Y</em> &amp; Z</div></title>
<link href="https://blog.example/a2"/><updated>2026-03-01T00:00:00Z</updated>
<summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Para with <a href="https://x.example/">a link</a></p></div></summary>
<author><email>only@example.org</email></author></entry>
</feed>"""


def test_html_and_xhtml_titles_become_plain_text(content_settings, web):
    web.serve("/wp", WORDPRESS, "application/rss+xml; charset=UTF-8")
    web.serve("/atom", ATOM, "application/atom+xml")
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/wp")
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/atom")
    stored = articles()
    assert stored["wp-1"].title == "Q&A"
    assert stored["wp-2"].title == "Q&A with you"
    assert stored["urn:atom-1"].title == "Q&A now"  # the script's text is dropped with it
    assert stored["urn:atom-2"].title == "X Y & Z"


def test_author_email_addresses_are_never_published(content_settings, web):
    web.serve("/wp", WORDPRESS, "application/rss+xml")
    web.serve("/atom", ATOM, "application/atom+xml")
    web.serve(
        "/bare",
        rss(
            '<item><title>t</title><link>https://blog.example/b</link><guid isPermaLink="false">bare-1</guid>'
            "<author>bob@example.org</author></item>"
            '<item><title>t</title><link>https://blog.example/c</link><guid isPermaLink="false">bare-2</guid>'
            "<author>Carol &lt;carol@example.org&gt;</author></item>"
        ).encode(),
        "application/rss+xml",
    )
    for path in ("/wp", "/atom", "/bare"):
        feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + path)
    authors = {key: a.author for key, a in articles().items()}
    assert authors == {
        "wp-1": "Jane Doe",
        "wp-2": "Jane Doe",
        "urn:atom-1": "Ann Lee, Bo",
        "urn:atom-2": "",
        "bare-1": "",
        "bare-2": "Carol",
    }
    assert not any("@" in a.author or "@" in a.synopsis_html for a in articles().values())


MASTODON = rss(
    '<item><guid isPermaLink="false">https://social.example/@ann/1</guid><link>https://social.example/@ann/1</link>'
    "<pubDate>Sun, 01 Mar 2026 10:00:00 GMT</pubDate>"
    "<description>&lt;p&gt;Shipped the new agent planner today. It reads the whole repository before "
    'it proposes a change, which makes its plans far better. &lt;a href="https://social.example/tags/ai"&gt;'
    "#ai&lt;/a&gt;&lt;/p&gt;</description></item>"
    '<item><guid isPermaLink="false">https://social.example/@ann/2</guid><link>https://social.example/@ann/2</link>'
    "<pubDate>Mon, 02 Mar 2026 10:00:00 GMT</pubDate><description>Short one!</description></item>"
    '<item><guid isPermaLink="false">https://social.example/@ann/3</guid><link>https://social.example/@ann/3</link>'
    "<pubDate>Tue, 03 Mar 2026 10:00:00 GMT</pubDate><description>&lt;p&gt;&lt;/p&gt;</description></item>"
)


def test_untitled_items_get_a_title_from_their_text(content_settings, web):
    web.serve("/@ann.rss", MASTODON, "application/rss+xml; charset=utf-8")
    report = feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/@ann.rss")
    assert report.created == 3 and report.errors == []
    stored = articles()
    long = stored["https://social.example/@ann/1"]
    assert long.title == "Shipped the new agent planner today."
    assert stored["https://social.example/@ann/2"].title == "Short one!"
    assert stored["https://social.example/@ann/3"].title == "Post of 2026-03-03"
    assert 'href="https://social.example/tags/ai"' in long.synopsis_html


def test_untitled_item_with_one_long_sentence_is_cut_at_a_word(content_settings, web):
    words = "word " * 60
    web.serve(
        "/mb",
        rss(f"<item><guid isPermaLink=\"false\">mb-1</guid><link>https://micro.example/1</link><description>{words}</description></item>"
            ).encode(),
        "application/rss+xml",
    )  # fmt: skip
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/mb")
    title = articles()["mb-1"].title
    assert title.endswith("…") and len(title) <= feeds.TITLE_CHARS + 1 and "wor…" not in title


# --- plain text is not Markdown; HTML is sanitised ----------------------------------


def test_plain_text_is_shown_as_typed_and_html_is_sanitised(content_settings, web):
    web.serve("/atom", ATOM, "application/atom+xml")
    web.serve(
        "/rss",
        rss(
            '<item><title>t</title><link>https://blog.example/r</link><guid isPermaLink="false">rss-1</guid>'
            '<description>Read [this](http://evil.example) **now** &lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt;'
            '&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href="https://ok.example/"&gt;ok&lt;/a&gt;</description>'
            "</item>"
        ).encode(),
        "application/rss+xml",
    )
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/atom")
    feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/rss")
    stored = articles()
    typed = stored["urn:atom-1"]  # type="text": every character as typed, no link, no bold
    assert (
        typed.synopsis_html
        == "<p>Type [a link](http://evil.example) and &lt;b&gt;tags&lt;/b&gt; *as text*</p>"
    )
    assert (
        html_text(markdown_to_html(typed.synopsis))
        == "Type [a link](http://evil.example) and <b>tags</b> *as text*"
    )
    marked = stored["rss-1"]  # RSS description is HTML: cleaned, the typed link syntax stays text
    assert "evil.example" not in marked.synopsis_html.split("[this]")[0]
    assert 'href="http://evil.example"' not in marked.synopsis_html and "<strong>" not in marked.synopsis_html
    assert "javascript" not in marked.synopsis_html and "<script" not in marked.synopsis_html
    assert '<a href="https://ok.example/" rel="noopener noreferrer nofollow">ok</a>' in marked.synopsis_html
    assert '<p>Para with <a href="https://x.example/"' in stored["urn:atom-2"].synopsis_html


@pytest.mark.parametrize(
    "text",
    ["[x](http://e.example) *y* _z_ `c` <b>h</b> &amp; \\ # 1. - + ! | ~~s~~", "plain words", "a  b\n\nc"],
)
def test_escaped_markdown_renders_to_exactly_the_text(text):
    assert markdown_to_html(escape_markdown(" ".join(text.split()))) == text_to_html(text)


# --- warnings and empty feeds ------------------------------------------------------------


def test_a_feed_with_no_entries_gets_an_accurate_message(content_settings, web, make_app):
    empty = rss("")
    # served as a web page: feedparser reads the feed, with a warning
    web.serve("/empty", empty, "text/html; charset=utf-8")
    report = feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/empty")
    assert report.created == 0 and report.note.startswith("the RSS 2.0 feed has no entries")
    assert "warned" in report.note
    web.serve("/quiet", empty, "application/rss+xml")
    assert (
        feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/quiet").note
        == "the RSS 2.0 feed has no entries"
    )
    runner = make_app(feed_allow_hosts=LOCAL).test_cli_runner()
    out = runner.invoke(args=["articles", "import", "--feed", web.url + "/quiet"])
    assert out.exit_code == 0 and "the RSS 2.0 feed has no entries" in out.output


def test_a_broken_feed_or_a_page_is_a_clear_error(content_settings, web):
    web.serve(
        "/truncated",
        rss("<item><title>cut off").encode()[:-40],
        "application/rss+xml",
    )
    with pytest.raises(feeds.FeedError, match="RSS 2.0 feed is not well-formed"):
        feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/truncated")
    with session_scope() as session:
        assert "not well-formed" in session.get(FeedState, web.url + "/truncated").last_error
    web.serve("/page", "<html><body><p>Hello</p></body></html>", "text/html")
    with pytest.raises(feeds.FeedError, match="not an RSS or Atom feed"):
        feeds.poll_feed(content_settings(feed_allow_hosts=LOCAL), web.url + "/page")
