"""Editor-side changes to articles: their tags and the hold-back flag.

The ingest side (creating and sanitising articles) is ``content``'s; this
module only lets an editor correct tags; keeping an article out of the next
issue is ``content.service.set_held`` (the CLI's too).
"""

from __future__ import annotations

import re

from sqlmodel import Session, delete, select

from newsletter import clock
from newsletter.models import Article, ArticleTag, Tag

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


class ArticleError(ValueError):
    """A refused change; the message is shown to the editor."""


def parse_tags(raw: str) -> list[str]:
    """Comma- or space-separated slugs, lower-cased, de-duplicated, in order."""
    slugs: list[str] = []
    for item in re.split(r"[,\s]+", raw.strip().lower()):
        if not item:
            continue
        if not SLUG.match(item):
            raise ArticleError(f"{item[:40]!r} is not a tag slug (letters, digits and dashes)")
        if item not in slugs:
            slugs.append(item)
    if len(slugs) > 20:
        raise ArticleError("at most 20 tags per article")
    return slugs


def set_article_tags(session: Session, article_id: int, slugs: list[str]) -> Article:
    """Replace an article's tags; unknown slugs become new tags (not sections
    until an admin says so, so a typo never adds a section to the issue)."""
    article = session.get(Article, article_id)
    if article is None:
        raise ArticleError("no such article")
    existing = {t.slug: t for t in session.exec(select(Tag).where(Tag.slug.in_(slugs)))} if slugs else {}
    for slug in slugs:
        if slug not in existing:
            tag = Tag(slug=slug, name=slug.replace("-", " ").title(), is_section=False)
            session.add(tag)
            session.flush()
            existing[slug] = tag
    session.exec(delete(ArticleTag).where(ArticleTag.article_id == article_id))
    for slug in slugs:
        session.add(ArticleTag(article_id=article_id, tag_id=existing[slug].id))
    article.updated_at = clock.now()
    session.add(article)
    session.flush()
    return article
