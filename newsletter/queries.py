"""Read-only lists for the workspace pages: searched, filtered and paged in
the database (keyset pages on id), never loaded whole."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, func, select

from newsletter.db import contains_any
from newsletter.models import (
    SUBSCRIBER_STATUSES,
    Article,
    ArticleTag,
    Delivery,
    Event,
    Issue,
    Subscriber,
    Tag,
)

PAGE = 50


@dataclass
class Page:
    rows: list
    next_before: int | None  # id to pass as ?before= for the next page


def _page(rows: list, key) -> Page:
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Page(rows, key(rows[-1]) if more and rows else None)


# --- articles ------------------------------------------------------------------


def all_tags(session: Session) -> list[Tag]:
    return list(session.exec(select(Tag).order_by(Tag.position, Tag.slug)))


def search_articles(
    session: Session, *, q: str = "", tag: str = "", held: str = "", before: int | None = None
) -> Page:
    stmt = select(Article).order_by(Article.id.desc()).limit(PAGE + 1)
    if q:
        stmt = stmt.where(contains_any(q, Article.title, Article.author))
    if tag:
        stmt = stmt.join(ArticleTag, ArticleTag.article_id == Article.id).join(
            Tag, Tag.id == ArticleTag.tag_id
        )
        stmt = stmt.where(Tag.slug == tag)
    if held == "yes":
        stmt = stmt.where(Article.held.is_(True))
    elif held == "no":
        stmt = stmt.where(Article.held.is_(False))
    if before:
        stmt = stmt.where(Article.id < before)
    return _page(list(session.exec(stmt)), lambda a: a.id)


def tags_by_article(session: Session, article_ids: list[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {i: [] for i in article_ids}
    if not article_ids:
        return result
    rows = session.exec(
        select(ArticleTag.article_id, Tag.slug)
        .join(Tag, Tag.id == ArticleTag.tag_id)
        .where(ArticleTag.article_id.in_(article_ids))
        .order_by(Tag.position, Tag.slug)
    ).all()
    for article_id, slug in rows:
        result[article_id].append(slug)
    return result


# --- subscribers ---------------------------------------------------------------


def subscriber_counts(session: Session) -> dict[str, int]:
    """Readers by status, plus ``total`` (the dashboard, the stats API)."""
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    counts = {status: 0 for status in SUBSCRIBER_STATUSES}
    counts.update({status: n for status, n in rows})
    counts["total"] = sum(n for _, n in rows)
    return counts


def search_subscribers(session: Session, *, q: str = "", status: str = "", before: int | None = None) -> Page:
    stmt = select(Subscriber).order_by(Subscriber.id.desc()).limit(PAGE + 1)
    if q:
        stmt = stmt.where(contains_any(q, Subscriber.email, Subscriber.name))
    if status:
        stmt = stmt.where(Subscriber.status == status)
    if before:
        stmt = stmt.where(Subscriber.id < before)
    return _page(list(session.exec(stmt)), lambda s: s.id)


def subscriber_history(session: Session, subscriber_id: int, limit: int = 50):
    deliveries = session.exec(
        select(Delivery, Issue.number, Issue.title)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Issue.number.desc())
        .limit(limit)
    ).all()
    events = session.exec(
        select(Event)
        .where(Event.subscriber_id == subscriber_id)
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(limit)
    ).all()
    return deliveries, events
