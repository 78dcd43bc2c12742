"""The newsletter's sections (and so the topics readers choose among).

In order of precedence:

1. ``NEWSLETTER_SECTIONS``: tag slugs, in that order;
2. the tags an operator or the ingest marked as sections (``Tag.is_section``),
   by ``position`` — ``newsletter sections set`` chooses them, their order and
   their names;
3. on a fresh installation where nobody chose (articles from feeds, whose
   categories never become sections by themselves): the most-used tags of the
   articles, up to ``DERIVED_COUNT``, most-used first and by slug among equals,
   so the order is stable from one run to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.content.service import slugify, tag_name
from newsletter.models import Article, ArticleTag, Tag

DERIVED_COUNT = 6
HOW_TO_CHOOSE = (
    "Choose your own with `newsletter sections set SLUG,SLUG,…` (order and names; "
    "`newsletter sections list` shows the tags) or NEWSLETTER_SECTIONS."
)
SOURCES = {
    "setting": "NEWSLETTER_SECTIONS",
    "chosen": "tags marked as sections",
    "derived": "the most-used tags (none chosen yet)",
}


@dataclass
class Sections:
    tags: list[Tag]
    source: str  # setting | chosen | derived
    missing: list[str] = field(default_factory=list)  # NEWSLETTER_SECTIONS slugs no tag has

    @property
    def slugs(self) -> list[str]:
        return [t.slug for t in self.tags]

    def describe(self) -> str:
        names = ", ".join(t.name for t in self.tags) or "none"
        return f"sections from {SOURCES[self.source]}: {names}"


def current(session: Session, settings) -> Sections:
    """The ordered sections and where they come from."""
    if settings.sections:
        tags = {t.slug: t for t in session.exec(select(Tag).where(Tag.slug.in_(settings.sections))).all()}
        return Sections(
            [tags[s] for s in settings.sections if s in tags],
            "setting",
            [s for s in settings.sections if s not in tags],
        )
    chosen = list(session.exec(select(Tag).where(Tag.is_section).order_by(Tag.position, Tag.name)).all())
    if chosen:
        return Sections(chosen, "chosen")
    return Sections(derived(session), "derived")


def usage(session: Session) -> list[tuple[Tag, int]]:
    """Every tag with the number of articles (not held back) that carry it, most-used first."""
    count = func.count(ArticleTag.article_id)
    rows = session.exec(
        select(Tag, count)
        .join(ArticleTag, ArticleTag.tag_id == Tag.id, isouter=True)
        .join(Article, (Article.id == ArticleTag.article_id) & (Article.held == False), isouter=True)  # noqa: E712
        .group_by(Tag.id)
        .order_by(count.desc(), Tag.slug)
    ).all()
    return [(tag, n) for tag, n in rows]


def derived(session: Session, limit: int = DERIVED_COUNT) -> list[Tag]:
    return [tag for tag, n in usage(session) if n > 0][:limit]


class SectionsError(ValueError):
    """A refused choice of sections; the message says why."""


def set_sections(session: Session, slugs: list[str], names: dict[str, str] | None = None) -> list[Tag]:
    """Make ``slugs`` the sections, in that order (a slug no tag has yet
    becomes a new tag), rename those in ``names``; every other tag stops
    being a section."""
    names = names or {}
    clean = [slugify(s) for s in slugs]
    if not clean or any(not s for s in clean):
        raise SectionsError(
            "give one or more tag slugs (letters, digits and dashes), in the order to show them"
        )
    if len(set(clean)) != len(clean):
        raise SectionsError("a section can appear only once")
    unknown = sorted(set(names) - set(clean))
    if unknown:
        raise SectionsError(f"--name for a tag that is not among the sections: {', '.join(unknown)}")
    existing = {t.slug: t for t in session.exec(select(Tag)).all()}
    for tag in existing.values():
        tag.is_section = False
        session.add(tag)
    chosen = []
    for position, slug in enumerate(clean):
        tag = existing.get(slug) or Tag(slug=slug, name=tag_name("", slug))
        if slug in names:
            name = tag_name(names[slug], slug)
            if not name:
                raise SectionsError(f"the name of {slug} must not be empty")
            tag.name = name
        tag.is_section = True
        tag.position = position
        session.add(tag)
        chosen.append(tag)
    session.flush()
    return chosen
