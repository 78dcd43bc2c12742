"""Fixtures and helpers for the editor tests (accounts, logged-in clients)."""

from __future__ import annotations

import re

import pytest

from newsletter.db import session_scope
from newsletter.editor.service import create_editor

ADMIN = ("admin@example.org", "correct horse battery")
EDITOR = ("editor@example.org", "staple paper clip 42")


def make_account(email: str, password: str, role: str) -> int:
    with session_scope() as session:
        return create_editor(session, email, password, role).id


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, email: str, password: str):
    page = client.get("/editor/login")
    return client.post(
        "/editor/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.get_data(as_text=True))},
    )


class Browser:
    """A test client that keeps the CSRF token of the last page it saw."""

    def __init__(self, client):
        self.client = client
        self.token = ""

    def get(self, url, **kw):
        response = self.client.get(url, **kw)
        body = response.get_data(as_text=True)
        if 'name="csrf_token"' in body:
            self.token = csrf_of(body)
        return response

    def post(self, url, data=None, **kw):
        data = dict(data or {})
        if not self.token:
            self.get("/editor/dashboard")
        data.setdefault("csrf_token", self.token)
        return self.client.post(url, data=data, **kw)


@pytest.fixture
def accounts(app):
    """An admin and an editor account (the app must exist for the engine)."""
    make_account(*ADMIN, "admin")
    make_account(*EDITOR, "editor")
    return {"admin": ADMIN, "editor": EDITOR}


@pytest.fixture
def admin(app, accounts) -> Browser:
    client = app.test_client()
    assert login(client, *ADMIN).status_code == 302
    return Browser(client)


@pytest.fixture
def editor(app, accounts) -> Browser:
    client = app.test_client()
    assert login(client, *EDITOR).status_code == 302
    return Browser(client)


# --- content seeding (through the content and issues services) -------------------------

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def seed_articles(settings, count_per_section: int = 2, extra_title: str = "") -> None:
    """Two sections (agents, ethics) with articles published yesterday."""
    from datetime import timedelta

    from newsletter import clock
    from newsletter.content.service import upsert_articles
    from newsletter.models import Tag

    when = (clock.now() - timedelta(days=1)).isoformat()
    items = []
    for section in ("agents", "ethics"):
        for i in range(count_per_section):
            items.append(
                {
                    "url": f"https://example.org/{section}/{i}",
                    "title": f"{section.title()} story {i}",
                    "synopsis": f"What happened in {section} ({i}).",
                    "author": "Ada",
                    "published_at": when,
                    "tags": [section],
                }
            )
    if extra_title:
        items.append(
            {"url": "https://example.org/xss", "title": extra_title, "published_at": when, "tags": ["agents"]}
        )
    report = upsert_articles(items, "api")
    assert not report.errors, report.errors
    with session_scope() as s:
        for position, slug in enumerate(("agents", "ethics")):
            tag = s.exec(__import__("sqlmodel").select(Tag).where(Tag.slug == slug)).one()
            tag.is_section, tag.position = True, position
            s.add(tag)


def seed_issue(settings, **kw) -> int:
    from newsletter.issues.service import assemble_issue

    seed_articles(settings, **kw)
    result = assemble_issue(settings)
    assert result.issue is not None, result.message
    return result.issue.number


def add_subscriber(email: str, status: str = "active", topics: str = "", name: str = "") -> int:
    from newsletter import clock
    from newsletter.models import Subscriber
    from newsletter.suppression import email_hash

    with session_scope() as s:
        row = Subscriber(
            email=email,
            email_hash=email_hash(email),
            status=status,
            topics=topics,
            name=name,
            consent_source="form",
            consent_at=clock.now(),
            consent_text="I agree to get GET THE SIGNAL.",
        )
        s.add(row)
        s.flush()
        return row.id


# --- in a browser (the live server) --------------------------------------------------


def start(live_server_factory, make_app, **overrides):
    """A live server with an admin and an editor account, and its settings."""
    server = live_server_factory(make_app, **overrides)
    make_account(*ADMIN, "admin")
    make_account(*EDITOR, "editor")
    return server, server.app.extensions["signal_settings"]


def log_in(page, server, who=ADMIN):
    """Log ``who`` in through the login form and land on the dashboard."""
    page.goto(f"{server.url}/editor/login")
    page.fill("#email", who[0])
    page.fill("#password", who[1])
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r".*/editor/dashboard$"))
