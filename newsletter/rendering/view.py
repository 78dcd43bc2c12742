"""The view model of one issue variant: plain values the templates print as they are.

Everything a template shows is computed here (meta lines, the image
decision, Markdown → sanitised HTML ready for MJML, placeholders
neutralised), so the templates need no logic on article fields and print
values as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from textwrap import fill
from urllib.parse import urlsplit

from markupsafe import Markup
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.content.sanitise import html_to_text, is_https, markdown_to_html, neutralise
from newsletter.models import Article, Issue, IssueArticle, Tag
from newsletter.rendering.mjml import keep_spaces


@dataclass
class CardView:
    title: str
    url: str
    synopsis_html: Markup
    synopsis_text: str
    meta: str
    image_url: str = ""
    image_alt: str = ""

    @property
    def has_image(self) -> bool:
        return bool(self.image_url)


@dataclass
class SectionView:
    slug: str
    name: str
    articles: list[CardView] = field(default_factory=list)


@dataclass
class IssueView:
    number: int
    label: str
    theme: str
    title: str
    subject: str
    preheader: str
    intro_html: Markup
    intro_text: str
    web_url: str
    postal_address: str
    sections: list[SectionView]

    @property
    def article_count(self) -> int:
        return sum(len(s.articles) for s in self.sections)

    def only(self, variant: str) -> IssueView:
        """The same issue restricted to a variant's sections (no database work)."""
        if not variant:
            return self
        wanted = set(variant.split(","))
        return replace(self, sections=[s for s in self.sections if s.slug in wanted])


def meta_line(article: Article) -> str:
    """ "By Ana Lee · 6 min read · example.com" — never empty (the host is always known)."""
    parts = []
    if article.author:
        parts.append(f"By {neutralise(article.author)}")
    if article.reading_minutes:
        parts.append(f"{article.reading_minutes} min read")
    host = (urlsplit(article.url).hostname or "").removeprefix("www.")
    if host:
        parts.append(host)
    return " · ".join(parts)


@lru_cache(maxsize=4096)
def plain_text(fragment: str, width: int = 72) -> str:
    """Sanitised HTML → wrapped plain text for the text part (cached: the same
    synopsis is rendered once per variant)."""
    paragraphs = html_to_text(fragment).split("\n")
    return "\n".join(
        fill(p, width, break_long_words=False, break_on_hyphens=False) if p else "" for p in paragraphs
    )


def card_view(article: Article) -> CardView:
    show_image = is_https(article.image_url) and bool((article.image_alt or "").strip())
    # neutralised again: rows stored before markdown_to_html neutralised its output
    synopsis_html = neutralise(article.synopsis_html or markdown_to_html(article.synopsis))
    return CardView(
        title=neutralise(article.title),
        url=article.url,
        synopsis_html=Markup(keep_spaces(synopsis_html)),
        synopsis_text=plain_text(synopsis_html),
        meta=meta_line(article),
        image_url=article.image_url if show_image else "",
        image_alt=neutralise(article.image_alt) if show_image else "",
    )


def issue_sections(session: Session, issue: Issue) -> list[str]:
    """The section slugs of an issue, in the order they appear in it."""
    rows = session.exec(
        select(IssueArticle.section, IssueArticle.position)
        .where(IssueArticle.issue_id == issue.id)
        .order_by(IssueArticle.position)
    ).all()
    seen: dict[str, None] = {}
    for slug, _ in rows:
        seen.setdefault(slug, None)
    return list(seen)


def web_url(settings: Settings, number: int) -> str:
    return f"{settings.base_url}/issues/{number}"


def build_view(session: Session, issue: Issue, settings: Settings, variant: str = "") -> IssueView:
    """The view of ``issue`` for ``variant`` (sorted section slugs; "" = all sections)."""
    wanted = set(variant.split(",")) if variant else None
    if wanted is not None and not wanted & set(issue_sections(session, issue)):
        wanted = None  # never an empty email: fall back to every section
    rows = session.exec(
        select(IssueArticle, Article)
        .join(Article, Article.id == IssueArticle.article_id)
        .where(IssueArticle.issue_id == issue.id)
        .order_by(IssueArticle.position, IssueArticle.article_id)
    ).all()
    slugs = {link.section for link, _ in rows}
    names = (
        {t.slug: t.name for t in session.exec(select(Tag).where(Tag.slug.in_(slugs))).all()} if slugs else {}
    )
    by_slug: dict[str, SectionView] = {}
    for link, article in rows:
        if wanted is not None and link.section not in wanted:
            continue
        section = by_slug.get(link.section)
        if section is None:
            section = by_slug[link.section] = SectionView(
                link.section, neutralise(names.get(link.section, link.section))
            )
        section.articles.append(card_view(article))
    intro_html = markdown_to_html(issue.intro)
    title = neutralise(issue.title) or f"{issue.label}: {neutralise(issue.theme)}"
    return IssueView(
        number=issue.number,
        label=issue.label,
        theme=neutralise(issue.theme) or issue.label,
        title=title,
        subject=neutralise(issue.subject) or title,
        preheader=neutralise(issue.preheader),
        intro_html=Markup(keep_spaces(intro_html)),
        intro_text=plain_text(intro_html),
        web_url=web_url(settings, issue.number),
        postal_address=neutralise(settings.postal_address),
        sections=list(by_slug.values()),
    )
