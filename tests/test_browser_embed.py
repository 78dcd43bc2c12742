"""The sign-up box on another site, in headless Chromium with third-party cookies blocked.

The app runs on ``http://127.0.0.1:PORT``; the publisher's article pages are
served by a second server on ``http://localhost:PORT2`` (another site, as the
browser counts sites) under a strict CSP of their own: no inline script or
style, only the app's origin allowed for scripts, styles, fetches and frames.
Each variant (iframe, script) subscribes a reader, the confirmation mail
arrives over real SMTP, and the reader becomes active. A third server on
another port, not listed in NEWSLETTER_EMBED_ORIGINS, is refused. axe-core
(tests/axe, from npm) checks every page state; screenshots at 320, 375 and
1280 px, light and dark.
"""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from newsletter.readers import signups
from tests.conftest import CHROMIUM
from tests.editor_fixtures import EDITOR, make_account
from tests.helpers import AXE, LoopbackServer, axe_findings, require
from tests.readers_fixtures import reader

pytestmark = pytest.mark.browser
WIDTHS = (280, 320, 375, 1280)  # the box works from 280 px up
HOST_CSS = """
body { margin: 0; font: 18px/1.6 Georgia, serif; background: #fbfaf7; color: #1d1d1d; }
body.dark { background: #101216; color: #e9e9ea; }
main { max-width: 40rem; margin: 0 auto; padding: 1rem; }
iframe { display: block; width: 100%; border: 0; }
"""


def host_page(app_url: str, variant: str, theme: str) -> str:
    """An article page of the publisher, with the snippet the editor page hands out."""
    options = f"theme={theme}&accent=%23c2410c" if theme == "light" else f"theme={theme}"
    if variant == "iframe":  # light: the iframe alone; dark: with embed.js beside it to fit its height
        box = (
            f'<iframe src="{app_url}/embed?{options}&amp;page=/{variant}-{theme}.html" '
            'title="Subscribe to GET THE SIGNAL" height="560" loading="lazy"></iframe>'
        )
        if theme == "dark":
            box += f'<script src="{app_url}/embed.js" async></script>'

    else:
        accent = ' data-accent="#c2410c"' if theme == "light" else ' data-layout="compact"'
        box = f'<div data-gts-box data-theme="{theme}"{accent}></div><script src="{app_url}/embed.js" async></script>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agents that read the news · The Publisher</title><link rel="stylesheet" href="/host.css"></head>
<body class="{theme}"><main><article><h1>Agents that read the news</h1>
<p>An article on the publisher's own site. At its foot, the newsletter's sign-up box.</p></article>
<aside aria-label="Newsletter">{box}</aside></main></body></html>"""


class HostSite(LoopbackServer):
    """The publisher's site: article pages under a strict CSP naming only the app."""

    def __init__(self):
        self.app_url = ""  # set once the app runs (it must know this site's URL first)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                app_url = site.app_url
                csp = (
                    f"default-src 'none'; style-src 'self' {app_url}; script-src {app_url}; "
                    f"connect-src {app_url}; frame-src {app_url}; img-src 'self'; base-uri 'none'; "
                    "form-action 'none'"
                )
                name = self.path.strip("/").removesuffix(".html")
                if self.path == "/host.css":
                    body, kind = HOST_CSS, "text/css"
                elif name.count("-") == 1 and name.split("-")[0] in ("iframe", "script"):
                    body, kind = host_page(app_url, *name.split("-")), "text/html"
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Security-Policy", csp)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://localhost:{self.port}"  # another site than http://127.0.0.1


@pytest.fixture(scope="module")
def strict_chromium(chromium):
    """A second Chromium from the suite's Playwright (one per process), with third-party
    cookies blocked (Playwright's contexts block them as incognito windows do; the
    test-only phase-out flag makes sure) and localhost kept on IPv4, where the host
    pages listen."""
    require(AXE.exists(), "axe-core not installed (npm ci --prefix tests/axe)")
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--test-third-party-cookie-phaseout",
            "--host-resolver-rules=MAP localhost 127.0.0.1",
        ],
    )
    yield browser
    browser.close()


class Watch:
    """What the page asked of the app (with the Cookie header) and every CSP complaint."""

    def __init__(self, page, app_url: str):
        self.seen: list = []
        self.console: list[str] = []
        page.on("request", lambda r: r.url.startswith(app_url) and self.seen.append(r))
        page.on("console", lambda m: self.console.append(m.text))

    def requests(self) -> list[tuple[str, str | None]]:
        """(URL, Cookie header as sent) of each request to the app."""
        return [(r.url, r.all_headers().get("cookie")) for r in self.seen]

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]


def with_app_cookie(context, page, server, watch) -> None:
    """Give the browser a cookie for the app (SameSite=None, as a tracker's would be) and
    check it is sent first-party: then its absence from the host's requests means the
    browser really withheld it as a third-party cookie."""
    cookie = {"name": "probe", "value": "1", "domain": "127.0.0.1", "path": "/", "sameSite": "None"}
    context.add_cookies([{**cookie, "secure": True}])
    page.goto(server.url + "/healthz")
    assert watch.requests()[-1][1] == "probe=1"
    watch.seen.clear()


def fitted(page, frame) -> None:
    """Wait until the iframe is as tall as the page inside it."""
    inner = frame.evaluate("() => document.documentElement.scrollHeight")
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('iframe').getBoundingClientRect().height - {inner}) < 2"
    )


def box_frame(page, variant: str):
    """Where the box lives: the iframe's document, or the host page itself."""
    if variant == "script":
        page.locator(".gts-form").wait_for()
        return page.main_frame
    handle = page.locator("iframe").element_handle()
    frame = handle.content_frame()
    frame.wait_for_selector(".gts-form[data-gts-ready], .gts[data-gts-ready]")
    return frame


@pytest.mark.parametrize("variant", ["iframe", "script"])
def test_a_reader_subscribes_through_the_box_on_another_site(
    strict_chromium, live_server_factory, make_app, smtp_server, topics, screenshot, variant
):
    host = HostSite()
    try:
        server = live_server_factory(make_app, transport=smtp_server.dsn, embed_origins=(host.url,))
        host.app_url = server.url
        _subscribe_through(strict_chromium, server, host, smtp_server, screenshot, variant)
    finally:
        host.stop()


def _subscribe_through(browser, server, host, smtp_server, screenshot, variant):
    context = browser.new_context(viewport={"width": 375, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    watch = Watch(page, server.url)
    try:
        with_app_cookie(context, page, server, watch)

        for theme in ("light", "dark"):
            page.goto(f"{host.url}/{variant}-{theme}.html")
            frame = box_frame(page, variant)
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(50)
                if variant == "iframe" and theme == "dark":  # fitted: the whole box shows, no more
                    fitted(page, frame)
                screenshot(page, f"embed-{variant}-{theme}-{width}")
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
                assert frame.locator(".gts-button").is_visible() and frame.locator(".gts-email").is_visible()
                assert axe_findings(frame) == [], (variant, theme, width)

        page.set_viewport_size({"width": 320, "height": 900})
        page.goto(f"{host.url}/{variant}-light.html")
        frame = box_frame(page, variant)
        if variant == "iframe":  # the accent arrives through the CSSOM, not an inline style
            assert (
                frame.locator(".gts").evaluate("e => getComputedStyle(e).getPropertyValue('--gts-accent')")
                == "#c2410c"
            )
        frame.get_by_label("Email address").fill("not an address")
        frame.get_by_role("button", name="Subscribe").click()
        result = frame.locator(".gts-result")
        result.locator("text=/valid|address/i").wait_for()
        assert "gts-error" in result.get_attribute("class") and result.get_attribute("aria-live") == "polite"
        assert frame.get_by_label("Email address").get_attribute("aria-invalid") == "true"
        assert axe_findings(frame) == []
        screenshot(page, f"embed-{variant}-error-320")

        frame.get_by_label("Email address").fill("Reader@Example.org")
        frame.get_by_role("checkbox", name="Tools").uncheck()
        frame.get_by_role("button", name="Subscribe").click()
        result.locator("text=a confirmation link is on its way").wait_for()
        assert "gts-success" in result.get_attribute("class")
        assert page.url == f"{host.url}/{variant}-light.html"  # no page change
        screenshot(page, f"embed-{variant}-success-320")

        sent = watch.requests()
        assert any("/api/v1/subscribers" in url for url, _ in sent)  # both variants send to the JSON API
        assert all(cookie is None for _, cookie in sent), sent  # third-party: never a cookie
        assert watch.csp_violations() == []  # the host's strict CSP blocked nothing

        sub = reader("reader@example.org")
        assert sub.status == "pending" and sub.consent_source == "embed" and sub.topics == "agents,models"
        page_path = f"/{variant}-light.html"
        assert signups.by_source() == [(host.url + page_path, 1)]

        [confirmation] = smtp_server.wait_for(1)
        [link] = [u for u in confirmation.links() if "/confirm/" in u]
        page.goto(link)
        page.get_by_role("button", name="Yes, subscribe me").click()
        page.get_by_role("heading", name="You're subscribed").wait_for()
        assert reader("reader@example.org").status == "active"
    finally:
        context.close()


@pytest.mark.parametrize("variant", ["iframe", "script"])
def test_a_site_not_listed_is_refused(
    strict_chromium, live_server_factory, make_app, topics, screenshot, variant
):
    server = live_server_factory(make_app, embed_origins=("https://blog.example.org",))
    stranger = HostSite()
    stranger.app_url = server.url
    context = strict_chromium.new_context(viewport={"width": 375, "height": 700})
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        page.goto(f"{stranger.url}/{variant}-light.html")
        if variant == "iframe":
            frame = page.locator("iframe").element_handle().content_frame()
            frame.get_by_role("heading", name="Sign-up box not enabled here").wait_for()
            text = frame.locator("body").inner_text()
            assert frame.locator("form").count() == 0
        else:
            page.get_by_role("alert").wait_for()
            text = page.get_by_role("alert").inner_text()
            assert page.locator(".gts-form").count() == 0
        assert f"not enabled for {stranger.url}" in text and "NEWSLETTER_EMBED_ORIGINS" in text
        screenshot(page, f"embed-{variant}-refused-375")
    finally:
        context.close()
        stranger.stop()


def test_the_editor_page_shows_the_live_box_and_its_snippets(
    strict_chromium, live_server_factory, make_app, topics, screenshot
):
    server = live_server_factory(make_app, embed_origins=("https://blog.example.org",))
    make_account(*EDITOR, "editor")
    context = strict_chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: m.type == "error" and "Failed to load resource" not in m.text and errors.append(m.text),
    )
    try:
        page.goto(f"{server.url}/editor/login")
        page.fill("#email", EDITOR[0])
        page.fill("#password", EDITOR[1])
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/editor/dashboard")
        page.get_by_role("link", name="Sign-up box").click()
        page.get_by_role("heading", name="Sign-up box", exact=True).wait_for()
        box = page.frame_locator("iframe[title='Preview of the sign-up box']")
        box.get_by_role("button", name="Subscribe").wait_for()

        page.get_by_label("Theme").select_option("dark")  # a change shows the box with it at once
        page.wait_for_url(re.compile(r".*theme=dark.*"))
        page.get_by_label("Button").fill("Get it weekly")
        page.get_by_role("button", name="Show the box with these options").click()
        box.get_by_role("button", name="Get it weekly").wait_for()
        assert box.locator(".gts-dark").count() == 1
        snippet = page.locator("pre[aria-labelledby='snippet-script']").inner_text()
        assert 'data-theme="dark"' in snippet and 'data-button="Get it weekly"' in snippet
        assert f'<script src="{server.url}/embed.js" async></script>' in snippet  # NEWSLETTER_BASE_URL
        assert "https://blog.example.org" in page.locator("#sites-title + ul").inner_text()
        assert axe_findings(page.main_frame) == []
        screenshot(page, "editor-embed-1280")
        page.set_viewport_size({"width": 375, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, "editor-embed-375")
        assert errors == []
    finally:
        context.close()


def test_the_iframe_works_with_scripts_off(
    strict_chromium, live_server_factory, make_app, smtp_server, topics
):
    """No script anywhere: the iframe's plain form posts, cookie-less, and the frame shows the result."""
    host = HostSite()
    try:
        server = live_server_factory(make_app, transport=smtp_server.dsn, embed_origins=(host.url,))
        host.app_url = server.url
        context = strict_chromium.new_context(
            viewport={"width": 375, "height": 900}, java_script_enabled=False
        )
        page = context.new_page()
        page.set_default_timeout(15000)
        watch = Watch(page, server.url)
        with_app_cookie(context, page, server, watch)
        page.goto(f"{host.url}/iframe-light.html")
        frame = page.frame_locator("iframe")
        frame.get_by_label("Email address").fill("quiet@example.org")
        frame.get_by_role("button", name="Subscribe").click()
        frame.get_by_text("a confirmation link is on its way").wait_for()
        assert page.url == f"{host.url}/iframe-light.html"
        assert reader("quiet@example.org").status == "pending"
        assert signups.by_source() == [(host.url + "/iframe-light.html", 1)]
        posts = [(url, cookie) for url, cookie in watch.requests() if url.endswith("/embed")]
        assert posts and all(cookie is None for _, cookie in posts)
        [confirmation] = smtp_server.wait_for(1)
        assert confirmation.rcpt_tos == ["quiet@example.org"]
        context.close()
    finally:
        host.stop()
