"""Shared helpers for the content, assembly, rendering and archive tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter import clock, db
from newsletter.content.service import upsert_articles
from newsletter.db import session_scope
from newsletter.models import Issue, Tag

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
SECTIONS = (
    ("ai-agents", "AI Agents"),
    ("ai-ethics", "AI Ethics"),
    ("data", "Data"),
    ("research", "Research"),
)


@pytest.fixture
def content_settings(make_settings):
    """Settings with the engine initialised, the clock at T0 and four sections."""

    def build(**overrides):
        settings = make_settings(**overrides)
        db.init_engine(settings.database_url)
        return settings

    clock.set(T0)
    settings = build()
    make_sections()
    build.default = settings
    return build


def make_sections(sections=SECTIONS) -> None:
    with session_scope() as session:
        for position, (slug, name) in enumerate(sections):
            session.add(Tag(slug=slug, name=name, position=position, is_section=True))


def article(n: int, tags, *, at: datetime | None = None, **extra) -> dict:
    item = {
        "external_id": f"a-{n}",
        "url": f"https://example.com/posts/{n}",
        "title": f"Article {n}",
        "synopsis": f"Synopsis of article {n}.",
        "author": "Ana Lee",
        "reading_minutes": 4,
        "published_at": (at or clock.now() - timedelta(hours=n + 1)).isoformat(),
        "tags": list(tags) if not isinstance(tags, str) else [tags],
    }
    item.update(extra)
    return item


def add_articles(settings, items) -> list[int]:
    report = upsert_articles(items, "api")
    assert not report.errors, report.errors
    return report.ids


def mark_sent(number: int) -> None:
    with session_scope() as session:
        from sqlmodel import select

        issue = session.exec(select(Issue).where(Issue.number == number)).one()
        issue.status = "sent"
        issue.sent_at = clock.now()
        session.add(issue)
