"""Every page, at a phone's width and a desktop's: axe-core finds nothing
serious or critical (email HTML included), and nothing scrolls sideways.

The pages come from the app's URL map through ``tests/page_registry.py``: a
GET route missing from it fails ``test_every_get_route_is_a_listed_page``
(in the fast set) by name. axe-core is the npm package pinned in
tests/axe/package-lock.json (``npm ci --prefix tests/axe``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.content.service import upsert_articles
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver
from newsletter.issues.service import approve_issue, assemble_issue
from newsletter.models import OutboxMessage
from newsletter.readers import links
from newsletter.readers.service import send_preferences_link
from tests.delivery_fixtures import wait_for_queue
from tests.editor_fixtures import ADMIN, add_subscriber, make_account, seed_articles
from tests.helpers import require
from tests.page_registry import Page, pages_of

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (375, 1280)
BLOCKING = {"serious", "critical"}
ALSO = {
    "empty-table-header"
}  # minor in axe, but a table column with no name is a real question to a screen reader


def test_every_get_route_is_a_listed_page(app):
    listed = pages_of(app)
    assert {endpoint for endpoint, _ in listed} >= {"readers.index", "editor.issue", "readers.preferences"}


def test_an_unlisted_route_fails_by_name(make_app):
    app = make_app()
    app.add_url_rule("/editor/tokens", "editor.tokens_test_only", lambda: "tokens")
    with pytest.raises(AssertionError, match="editor.tokens_test_only"):
        pages_of(app)


@dataclass
class World:
    """What the listed paths need: a sent, an approved and a draft issue, a
    reader and their links, a pending reader, mail in the outbox."""

    values: dict[str, str]

    def path(self, page: Page) -> str:
        return page.path.format(**self.values)


def _more_articles(prefix: str, count: int = 3) -> None:
    when = (clock.now() - timedelta(hours=2)).isoformat()
    items = [
        {"url": f"https://example.org/{prefix}/{i}", "title": f"{prefix.title()} story {i}",
         "synopsis": f"What happened ({i}).", "published_at": when, "tags": ["agents" if i % 2 else "ethics"]}
        for i in range(count)
    ]  # fmt: skip
    assert not upsert_articles(items, "api").errors


def build_world(settings) -> World:
    reader = add_subscriber("reader@example.org", topics="agents", name="Ada")
    pending = add_subscriber("pending@example.org", status="pending")
    seed_articles(settings, count_per_section=3)
    sent = assemble_issue(settings).issue.number
    approve_issue(sent, ADMIN[0])
    deliver(settings, sent, here=True)
    clock.advance(timedelta(days=7))
    _more_articles("approved")
    approved = assemble_issue(settings).issue.number
    approve_issue(approved, ADMIN[0])
    clock.advance(timedelta(days=7))
    _more_articles("draft", 6)
    draft = assemble_issue(settings).issue.number
    send_preferences_link(settings, reader)
    wait_for_queue()
    with session_scope() as session:
        mail = session.exec(select(OutboxMessage.id).where(OutboxMessage.kind == "issue")).first()
        notice = session.exec(select(OutboxMessage.id).where(OutboxMessage.kind == "transactional")).first()
    assert mail and notice, "the world needs an issue mail and a one-off mail in the outbox"
    return World(
        {
            "sent": str(sent),
            "approved": str(approved),
            "draft": str(draft),
            "subscriber": str(reader),
            "prefs": links.preferences_token(settings, reader),
            "unsub": links.unsubscribe_token(settings, reader),
            "confirm": links.confirm_token(settings, pending),
            "mail": str(mail),
            "notice": str(notice),
        }
    )


WIDE = """(width) => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > width + 1)
  .filter(e => !e.parentElement || e.parentElement.getBoundingClientRect().right <= width + 1)
  .slice(0, 4)
  .map(e => e.tagName.toLowerCase() + (e.className && e.className.baseVal === undefined ? '.' + e.className.split(' ').join('.') : '')
            + ' ' + Math.round(e.getBoundingClientRect().right) + 'px')"""


def axe_findings(page) -> list[str]:
    """axe in the page's top document only (``iframes: false``). axe is not in
    the framed documents, so axe.run used to wait 500 ms for each iframe to
    answer its ping and then leave it out; what they show (the email
    previews, the sign-up box) is opened and checked as a page of its own."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations'], iframes: false})"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:3])
        for v in result["violations"]
        if v["impact"] in BLOCKING or v["id"] in ALSO
    ]


@pytest.mark.browser
def test_every_page_passes_axe_and_fits_at_375(chromium, live_server_factory, make_app, screenshot):
    require(AXE.exists(), f"axe-core not installed at {AXE} (npm ci --prefix tests/axe)")
    server = live_server_factory(make_app)
    settings = server.app.extensions["signal_settings"]
    make_account(*ADMIN, "admin")
    world = build_world(settings)
    listed = pages_of(server.app)
    problems: list[str] = []
    for width in WIDTHS:
        # the pages' own CSP refuses injected scripts: axe is test tooling, so bypass it
        context = chromium.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.goto(f"{server.url}/editor/login")
        page.fill("#email", ADMIN[0])
        page.fill("#password", ADMIN[1])
        page.click("button:has-text('Log in')")
        page.wait_for_url(re.compile(r".*/editor/dashboard$"))
        anonymous = chromium.new_context(viewport={"width": width, "height": 900}, bypass_csp=True).new_page()
        for endpoint, spec in listed:
            tab = page if spec.who == "admin" else anonymous
            url = server.url + world.path(spec)
            response = tab.goto(url)
            where = f"{width}px {endpoint} {world.path(spec)}"
            if response is None or response.status >= 500:
                problems.append(f"{where}: status {response and response.status}")
                continue
            for finding in axe_findings(tab):
                problems.append(f"{where}: {finding}")
            scroll = tab.evaluate("document.documentElement.scrollWidth")
            if spec.kind == "page" and scroll > width:
                culprits = ", ".join(tab.evaluate(WIDE, width))
                problems.append(f"{where}: {scroll} px wide (scrolls sideways): {culprits}")
            name = re.sub(r"[^a-z0-9]+", "-", f"{endpoint}-{spec.path}".lower()).strip("-")
            if width == 375:
                screenshot(tab, f"pages-375-{name}")
        anonymous.context.close()
        context.close()
    assert not problems, "\n".join(problems)
