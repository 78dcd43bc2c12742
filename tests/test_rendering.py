"""Rendering: escaping of hostile values through Jinja and mjml-python,
placeholders, web fonts, variants, freezing, personalisation, lint, previews,
and the email in Chromium at 375 and 600 px."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter import tokens
from newsletter.content.sanitise import markdown_to_html
from newsletter.db import session_scope
from newsletter.delivery.transactional import render_transactional
from newsletter.issues.service import assemble_issue, get_issue, update_issue
from newsletter.models import Article, IssueRender, Subscriber
from newsletter.paths import TEMPLATES
from newsletter.rendering import placeholders
from newsletter.rendering.issue import freeze_issue, issue_sections, render_variant, variant_for
from newsletter.rendering.lint import lint_html
from newsletter.rendering.mjml import SYSTEM_FONTS, MjmlError, compile_mjml, keep_spaces
from newsletter.rendering.personalise import personalise
from newsletter.suppression import email_hash
from tests.content_fixtures import add_articles, article


def _issue(settings, items, **edits):
    add_articles(settings, items)
    issue = assemble_issue(settings).issue
    if edits:
        issue = update_issue(issue.number, **edits)
    return issue


def _subscriber(email, topics="", name="", status="active") -> int:
    with session_scope() as session:
        s = Subscriber(email=email, email_hash=email_hash(email), name=name, topics=topics, status=status)
        session.add(s)
        session.flush()
        return s.id


class Tags(HTMLParser):
    """Start tags with their (decoded) attributes, and each run of text with
    the element it is in — what a browser would see, entities decoded once."""

    VOID = {"br", "img", "meta", "link", "hr", "input"}

    def __init__(self, html):
        super().__init__()
        self.tags = []
        self.texts = []  # (tag, attrs, text)
        self._open = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self._open.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        tag, attrs = self._open[-1] if self._open else ("", {})
        self.texts.append((tag, attrs, data))

    def text(self) -> str:
        """All text, whitespace collapsed as a browser shows it."""
        return " ".join("".join(t for _, _, t in self.texts).split())


def standard() -> list[dict]:
    return [
        article(1, "ai-agents", synopsis="Why **planning** helps. See [the paper](https://arxiv.org/abs/1)."),
        article(
            2, "ai-agents", image_url="https://cdn.example.com/a.png", image_alt="A diagram of an agent loop"
        ),
        article(3, "data", reading_minutes=None, author=""),
        article(4, "research"),
        article(5, "ai-ethics", image_url="http://insecure.example.com/b.png", image_alt="insecure"),
        article(6, "data", image_url="https://cdn.example.com/c.png", image_alt=""),
    ]


def test_email_content_links_and_privacy(content_settings):
    settings = content_settings(postal_address="Signal Ltd, 5 Harbour Road, Leith")
    issue = _issue(settings, standard())
    with session_scope() as session:
        render = render_variant(session, issue, "", settings)
    html, text = render.html, render.text
    for n in range(1, 7):
        assert f"Article {n}" in html and f"Article {n}" in text
        assert f"https://example.com/posts/{n}" in html and f"https://example.com/posts/{n}" in text
    assert "Issue 001" in html and issue.theme in html
    assert (
        f"{settings.base_url}/issues/{issue.number}" in html
        and f"{settings.base_url}/issues/{issue.number}" in text
    )
    assert "Signal Ltd, 5 Harbour Road, Leith" in html and "Signal Ltd, 5 Harbour Road, Leith" in text
    assert "By Ana Lee · 4 min read · example.com" in html
    for slot in placeholders.SLOTS:
        marker = placeholders.marker(render.nonce, slot)
        assert marker in html and marker in text
    # images only when https and with alt text
    imgs = [attrs for tag, attrs in Tags(html).tags if tag == "img"]
    assert [i["src"] for i in imgs] == ["https://cdn.example.com/a.png"] and imgs[0][
        "alt"
    ] == "A diagram of an agent loop"
    # privacy: system fonts, nothing loaded from elsewhere except the article image
    assert "fonts.googleapis" not in html and "<link" not in html and "<script" not in html.lower()
    assert SYSTEM_FONTS.split(",")[0] in html and "Ubuntu" not in html
    findings = lint_html(html, settings.base_url)
    assert [f.code for f in findings if f.level == "error"] == []
    assert [f.code for f in findings if f.level == "warning"] == ["external-resource"]  # the cdn image
    # the text part reads on its own
    assert "<" not in re.sub(r"<https?://", "", text).replace("<b>", "")
    assert "Why planning helps. See the paper (https://arxiv.org/abs/1)." in text


def test_hostile_content_is_escaped_everywhere(content_settings):
    settings = content_settings.default
    evil = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    issue = _issue(
        settings,
        [
            article(
                1,
                "data",
                title=evil,
                author=evil,
                image_url='https://cdn.example.com/x.png?a=1&b="2',
                image_alt=evil,
            )
        ],
        theme=evil,
        intro=evil + " [x](javascript:alert(3))",
    )
    with session_scope() as session:
        render = render_variant(session, issue, "", settings)
    tags = Tags(render.html).tags
    assert not [t for t, _ in tags if t == "script"]
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]
    assert all(a.get("src", "").startswith("https://") for t, a in tags if t == "img")
    assert 'href="javascript' not in render.html
    assert "&lt;script&gt;" in render.html


HOSTILE = """Q "double" 'single' <script>alert(1)</script> &amp; &lt;b&gt; &#34; end"""


def test_hostile_values_keep_their_exact_value_in_attributes_and_text(content_settings):
    """Jinja escapes once and MRML writes what it read: an attribute or a text
    that was decoded and written back raw would not parse back to the value."""
    settings = content_settings.default
    url = "https://example.com/p?a=1&b=2&c=&quot;x&quot;&d=&#34;"
    issue = _issue(
        settings,
        [
            article(
                1,
                "data",
                title=HOSTILE,
                url=url,
                author=HOSTILE,
                image_url="https://cdn.example.com/x.png?a=1&b=2",
                image_alt=HOSTILE,
            ),
        ],  # fmt: skip
        title=HOSTILE,
        theme=HOSTILE,
        preheader=HOSTILE,
    )
    with session_scope() as session:
        html = render_variant(session, issue, "", settings).html
        url = session.exec(select(Article.url)).one()  # as ingest normalised it
    assert "&quot" in url
    page = Tags(html)
    assert not [t for t, _ in page.tags if t == "script"]
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    [img] = [a for t, a in page.tags if t == "img"]
    assert img["alt"] == HOSTILE and img["src"] == "https://cdn.example.com/x.png?a=1&b=2"
    assert [a["href"] for t, a in page.tags if t == "a" and "example.com/p" in a.get("href", "")] == [url] * 3
    [wrapper] = [a for t, a in page.tags if a.get("aria-roledescription") == "email"]
    assert wrapper["aria-label"] == HOSTILE  # MRML copies the title here
    texts = {(tag, text) for tag, _, text in page.texts}
    assert ("title", HOSTILE) in texts and ("h1", HOSTILE) in texts
    assert any(tag == "a" and attrs.get("href") == url and text == HOSTILE for tag, attrs, text in page.texts)
    assert any(text.startswith(f"By {HOSTILE} · ") for _, _, text in page.texts)
    preheader = [t for _, a, t in page.texts if "display:none" in a.get("style", "")]
    assert preheader == [HOSTILE]


FORGERIES = (
    "%%GTS_UNSUBSCRIBE_URL%% %%GTS_GREETING%% &#37;&#37;GTS_PREFERENCES_URL&#37;&#37; "
    "%%GTS&#95;UNSUBSCRIBE_URL%% %&#x25;GTS_GREETING%%"
)


def test_placeholders_survive_compilation_and_content_cannot_forge_them(content_settings):
    settings = content_settings.default
    items = [
        article(1, "data", title=FORGERIES, synopsis=FORGERIES, author=FORGERIES,
                image_url="https://cdn.example.com/a.png", image_alt=FORGERIES),
        article(2, "research", synopsis=f"[{FORGERIES}](https://example.org/?u=%%GTS_UNSUBSCRIBE_URL%%)"),
    ]  # fmt: skip
    issue = _issue(settings, items, title=FORGERIES, theme=FORGERIES, preheader=FORGERIES, intro=FORGERIES)
    with session_scope() as session:
        render = render_variant(session, issue, "", settings)
    # exactly the template's own: one greeting, one link of each kind, in the HTML and in the text
    markers = [placeholders.marker(render.nonce, slot) for slot in placeholders.SLOTS]
    for part in (render.html, render.text):
        assert [part.count(m) for m in markers] == [1, 1, 1]
    assert f'href="{placeholders.marker(render.nonce, placeholders.UNSUBSCRIBE_URL)}"' in render.html
    assert f'href="{placeholders.marker(render.nonce, placeholders.PREFERENCES_URL)}"' in render.html
    msg = personalise(render, settings, subscriber_id=7, email="r@example.org", name="Rea")
    assert "%%GTS_" not in msg.html and "%%GTS_" not in msg.text
    assert msg.html.count(msg.unsubscribe_url) == 1 and msg.text.count(msg.unsubscribe_url) == 1
    assert msg.html.count(msg.preferences_url) == 1 and msg.html.count("Hi Rea,") == 1


def test_markdown_keeps_its_spaces_and_code_through_mjml(content_settings):
    """MRML drops a whitespace text node that starts with a line break; a
    Markdown soft break between two inline elements must still read as a space."""
    settings = content_settings.default
    synopsis = (
        '**New:**\n*A paper*\n[read it](https://example.org/p "T <b> & \\"q\\"")\n`a<b && c>d`\n\n'
        "> quoted\n\n1. one\n   - nested\n\n```\n<tag> & x\n  indented\n```"
    )
    issue = _issue(settings, [article(1, "data", synopsis=synopsis)], intro="**Hello**\n*there*")
    with session_scope() as session:
        html = render_variant(session, issue, "", settings).html
    page = Tags(html)
    assert "New: A paper read it a<b && c>d" in page.text() and "Hello there" in page.text()
    assert [a["title"] for t, a in page.tags if t == "a" and a.get("href") == "https://example.org/p"] == [
        'T <b> & "q"'
    ]
    assert ("code", "<tag> & x\n  indented\n") in {(tag, text) for tag, _, text in page.texts}
    assert "quoted" in page.text() and "nested" in page.text()


MARKDOWN_PIECES = (
    "**b**", "*i*", "`c<d>`", '[l](https://e.org/?a=1&b=2 "t <x> & \\"q\\"")', "<script>", "&amp;", "&#34;", "&nbsp;",
    "</p>", "'", '"', "<", ">", "&", "~~s~~", "\n", "\n\n", "  \n", "> ", "- ", "1. ", "```\n", "    code", "\t", " ",
    "word", "é", "😀", "<!--", "-->", "\\", "![i](https://x.example/y.png)", "<https://auto.example>", "#", "---",
)  # fmt: skip


def test_sanitised_markdown_passes_through_mjml_unchanged():
    """Whatever Markdown an article or intro holds, MRML (strict about HTML,
    loose about whitespace) must neither refuse it nor change what it shows:
    the same elements, attributes, text and code, for a few hundred mixtures."""
    rng = random.Random(20261130)
    for _ in range(300):
        source = "".join(rng.choice(MARKDOWN_PIECES) for _ in range(rng.randint(1, 25)))
        fragment = markdown_to_html(source)
        html = compile_mjml(
            "<mjml><mj-body><mj-section><mj-column><mj-text>"
            f'<div class="probe">{keep_spaces(fragment)}</div>'
            "</mj-text></mj-column></mj-section></mj-body></mjml>"
        )
        inner = html[
            html.index('<div class="probe">') + len('<div class="probe">') : html.index("</div></div></td>")
        ]
        before, after = Tags(fragment), Tags(inner)
        assert after.tags == before.tags, source
        assert after.text() == before.text(), source
        code = [(tag, text) for tag, _, text in before.texts if tag in ("pre", "code")]
        assert [(tag, text) for tag, _, text in after.texts if tag in ("pre", "code")] == code, source


def _transactional_context(hostile: str) -> dict:
    """Every name a one-off email template uses, hostile where it is text."""
    return {
        "name": hostile, "email": "ana@example.org", "confirm_url": "https://x.example/confirm/t?a=1&b=2",
        "max_age_days": 7, "topics": [hostile, "data"], "unsubscribe_url": "https://x.example/u/t",
        "preferences_url": "https://x.example/p/t", "auto_send": True, "article_count": 3,
        "editor_url": "https://x.example/editor", "issue_label": "Issue 001", "issue_title": hostile,
        "preview_url": "https://x.example/editor/issues/1/preview", "slot_text": hostile, "reason": hostile,
        "grace_hours": 2, "local_time": True, "action": hostile, "error": hostile, "intro": hostile, "missed": [hostile],
        "issue_status": "approved",
    }  # fmt: skip


TRANSACTIONAL = sorted(
    p.name.removesuffix(".mjml.j2")
    for p in (Path(TEMPLATES) / "email").glob("*.mjml.j2")
    if not p.name.startswith(("_", "issue."))
)


UNPROVEN_RECIPIENT = {
    "confirm",
    "preferences_link",
    "already_subscribed",
}  # asked for by anyone: no typed text


@pytest.mark.parametrize("template", TRANSACTIONAL)
def test_every_one_off_email_compiles_escaped_and_loads_no_web_font(content_settings, template):
    settings = content_settings(postal_address="Signal Ltd, Leith")
    html, text = render_transactional(settings, template, _transactional_context(HOSTILE))
    page = Tags(html)
    assert not [t for t, _ in page.tags if t in ("script", "link")]
    if template in UNPROVEN_RECIPIENT:  # to an address nobody proved: no text anyone typed
        assert HOSTILE not in page.text() and HOSTILE not in text
    else:
        assert HOSTILE in page.text() and HOSTILE in text  # shown as the very text it is, in both parts
    assert "fonts.googleapis" not in html and "@import" not in html and "Ubuntu" not in html
    assert SYSTEM_FONTS.split(",")[0] in html and "GET THE SIGNAL" in page.text()
    assert "Signal Ltd, Leith" in page.text() and "Signal Ltd, Leith" in text
    assert [f.code for f in lint_html(html, settings.base_url) if f.level == "error"] == []


def test_the_issue_email_loads_no_web_font(content_settings):
    settings = content_settings.default
    issue = _issue(settings, standard())
    with session_scope() as session:
        html = render_variant(session, issue, "", settings).html
    assert "fonts.googleapis" not in html and "@import" not in html and "<link" not in html


def test_compile_mjml_imports_no_font_and_refuses_what_it_cannot_compile():
    def body(inner: str) -> str:
        return f"<mjml><mj-body><mj-section><mj-column>{inner}</mj-column></mj-section></mj-body></mjml>"

    # MRML knows Google Fonts URLs for Ubuntu, Roboto, Lato…; we give it none
    html = compile_mjml(
        body('<mj-text font-family="Ubuntu, Roboto, Lato">x</mj-text><mj-button>b</mj-button>')
    )
    assert "fonts.googleapis" not in html and "<link" not in html and "@import" not in html
    with pytest.raises(MjmlError, match="mj-font"):
        compile_mjml(
            '<mjml><mj-head><mj-font name="Raleway" href="https://fonts.googleapis.com/css?family=Raleway" />'
            "</mj-head>" + body("<mj-text>x</mj-text>")[6:]
        )
    with pytest.raises(MjmlError):
        compile_mjml(body("<mj-text>an <b>unclosed tag</mj-text>"))


def test_variant_for():
    sections = ["ai-agents", "data", "research"]
    assert variant_for("", sections) == ""
    assert variant_for("data", sections) == "data"
    assert variant_for("research,data,tools", sections) == "data,research"
    assert variant_for("tools", sections) == ""  # nothing of theirs this week: they get everything
    assert variant_for("ai-agents,data,research", sections) == ""  # everything = the shared render


def test_freeze_once_per_variant_and_variants_hold_their_sections(content_settings):
    settings = content_settings.default
    issue = _issue(settings, standard())
    _subscriber("all@example.org")
    _subscriber("data@example.org", topics="data")
    _subscriber("data2@example.org", topics="data")
    _subscriber("mix@example.org", topics="data,research,tools")
    _subscriber("none@example.org", topics="tools")
    _subscriber("gone@example.org", topics="research", status="unsubscribed")
    with session_scope() as session:
        issue = get_issue(session, issue.number)
        renders = freeze_issue(session, issue, settings)
        assert set(renders) == {"", "data", "data,research"}
        assert issue_sections(session, issue) == ["ai-agents", "ai-ethics", "data", "research"]
    with session_scope() as session:
        issue = get_issue(session, issue.number)
        again = freeze_issue(session, issue, settings)
        assert {v: r.id for v, r in again.items()} == {v: r.id for v, r in renders.items()}
        assert len(session.exec(select(IssueRender)).all()) == 3
        assert issue.frozen_at is not None
    data_only = renders["data"].html
    # (the issue-wide preheader may name any article; the cards are what differ)
    assert "/posts/3" in data_only and "/posts/6" in data_only
    assert "/posts/1" not in data_only and "/posts/4" not in data_only
    assert "/posts/4" in renders["data,research"].html and "/posts/1" in renders[""].html


def test_personalise_substitutes_tokens_without_rerendering(content_settings):
    settings = content_settings.default
    issue = _issue(settings, standard())
    sid = _subscriber("ana@example.org", name='Ana "<b>"')
    with session_scope() as session:
        render = render_variant(session, issue, "", settings)
    msg = personalise(render, settings, subscriber_id=sid, email="ana@example.org", name='Ana "<b>"')
    unsubscribe = tokens.make_token(settings.secret_key, "unsubscribe", sid)
    preferences = tokens.make_token(settings.secret_key, "preferences", sid)
    assert msg.unsubscribe_url == f"{settings.base_url}/unsubscribe/{unsubscribe}"
    assert msg.preferences_url == f"{settings.base_url}/preferences/{preferences}"
    assert tokens.read_token(settings.secret_key, "unsubscribe", unsubscribe) == str(sid)
    assert f'href="{msg.unsubscribe_url}"' in msg.html and msg.unsubscribe_url in msg.text
    assert msg.preferences_url in msg.html and msg.preferences_url in msg.text
    assert "Hi Ana &#34;&lt;b&gt;&#34;," in msg.html or "Hi Ana &quot;&lt;b&gt;&quot;," in msg.html
    assert 'Hi Ana "<b>",' in msg.text
    assert render.nonce not in msg.html and render.nonce not in msg.text
    assert msg.subject == render.subject == issue.title
    other = personalise(render, settings, subscriber_id=sid + 1, email="b@example.org", name="")
    assert "Hello," in other.html and other.unsubscribe_url != msg.unsubscribe_url
    unsubscribe_marker = placeholders.marker(render.nonce, placeholders.UNSUBSCRIBE_URL)
    assert render.html.count(unsubscribe_marker) == 1  # the frozen render is untouched


def test_lint_findings():
    big = "<html><body>" + "x" * (103 * 1024) + "</body></html>"
    assert any(f.code == "gmail-clip" and f.level == "error" for f in lint_html(big))
    html = (
        '<html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
        "<style>@import url(https://fonts.example.com/f.css); .a{background:url('https://t.example.com/p.gif')}</style>"
        '</head><body><script src="https://evil.example.com/x.js"></script>'
        '<img src="https://localhost/logo.png" alt="logo"><img src="https://cdn.example.com/y.png">'
        '<img src="https://t.example.com/p.gif" width="1" height="1" alt="">'
        '<a href="javascript:alert(1)">x</a><a href="data:text/html,x">y</a><a href="https://ok.example">ok</a>'
        '<a href="%%GTS_UNSUBSCRIBE_URL%%">u</a></body></html>'
    )
    found = lint_html(html, "https://localhost")
    codes = [f.code for f in found]
    assert codes.count("link-scheme") == 2
    assert codes.count("img-alt") == 2 and "tracking-pixel" in codes and "script" not in codes
    messages = " ".join(f.message for f in found)
    for url in (
        "cdn.example.com/x.css",
        "fonts.example.com/f.css",
        "evil.example.com/x.js",
        "t.example.com/p.gif",
    ):
        assert url in messages
    assert "localhost/logo.png" not in messages  # same host as base_url
    assert found[0].level == "error" and found[-1].level == "info"


def test_cli_preview(content_settings, make_app, tmp_path):
    settings = content_settings.default
    issue = _issue(settings, standard())
    _subscriber("reader@example.org", topics="research", name="Rea")
    runner = make_app().test_cli_runner()
    out = runner.invoke(args=["issue", "preview", str(issue.number), "--text"])
    assert out.exit_code == 0 and "Article 1" in out.output and "lint info: HTML is" in out.output
    target = tmp_path / "p.html"
    out = runner.invoke(
        args=["issue", "preview", str(issue.number), "--as", "reader@example.org", "--out", str(target)]
    )
    assert out.exit_code == 0 and "variant: research" in out.output
    body = target.read_text()
    assert "Hi Rea," in body and "/posts/4" in body and "/posts/1" not in body
    out = runner.invoke(args=["issue", "preview", "999"])
    assert out.exit_code == 1 and "no issue 999" in out.output
    out = runner.invoke(args=["issue", "preview", str(issue.number), "--as", "nobody@example.org"])
    assert out.exit_code == 1 and "no subscriber" in out.output


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 600])
def test_email_fits_phone_and_desktop_widths(content_settings, page, screenshot, width):
    settings = content_settings.default
    items = [article(n, ["ai-agents", "ai-ethics", "data", "research"][n % 4]) for n in range(1, 13)]
    items[1]["image_url"], items[1]["image_alt"] = (
        settings.base_url.replace("http:", "https:") + "/x.png",
        "A chart",
    )
    items[2]["title"] = "A deliberately long headline: " + "Supercalifragilisticexpialidocious " * 3
    items[3]["url"] = "https://example.com/" + "very-long-path-segment-" * 8
    issue = _issue(settings, items, intro="This week: **agents**, ethics and data.")
    with session_scope() as session:
        render = render_variant(session, issue, "", settings)
    html = personalise(render, settings, subscriber_id=1, email="a@example.org", name="Ana").html
    page.set_viewport_size({"width": width, "height": 900})
    page.set_content(html, wait_until="load")
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"horizontal overflow at {width}px: {scroll} > {inner}"
    for item in items:
        link = page.locator(f'a[href="{item["url"]}"]').first
        assert link.is_visible()
        box = link.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1
    assert page.get_by_text("GET THE SIGNAL", exact=False).first.is_visible()
    assert page.get_by_role("link", name="Unsubscribe").is_visible()
    screenshot(page, f"email-issue-{width}")
