"""The view model of one issue variant: plain values the templates print as they are.

Everything a template shows is computed here (meta lines, the image
decision, Markdown → sanitised HTML ready for MJML, placeholders
neutralised), so the templates need no logic on article fields and print
values as they are.

An approved issue is rendered from the snapshot of its articles taken at
approval (``IssueArticle.snapshot``, written by ``issues.service``), not
from the live rows: an article that a feed or API client changes afterwards
is not sent unreviewed. ``issue_content`` is the one reading of "what this
issue shows", for the view, the lint and the approval.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from textwrap import fill
from urllib.parse import urlsplit

from markupsafe import Markup
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.content.sanitise import html_to_text, is_https, markdown_to_html, neutralise
from newsletter.models import Article, ArticleTag, Issue, IssueArticle, Tag
from newsletter.rendering import wording
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
    intro_source: str = ""  # the editor's Markdown, placeholders unfilled (rendering.wording)
    preheader_source: str = ""

    @property
    def article_count(self) -> int:
        return sum(len(s.articles) for s in self.sections)

    def only(self, variant: str) -> IssueView:
        """The same issue restricted to a variant's sections (no database work)."""
        if not variant:
            return self
        wanted = set(variant.split(","))
        return with_copy(replace(self, sections=[s for s in self.sections if s.slug in wanted]))


def with_copy(view: IssueView) -> IssueView:
    """``view`` with its intro and preheader filled for the sections it shows
    (rendering.wording): counts, topics and the inbox line are this variant's."""
    filled = wording.values(
        [s.name for s in view.sections], [a.title for s in view.sections for a in s.articles]
    )
    intro_html = markdown_to_html(wording.fill(view.intro_source, filled))
    return replace(
        view,
        preheader=neutralise(wording.fill(view.preheader_source, filled)),
        intro_html=Markup(keep_spaces(intro_html)),
        intro_text=plain_text(intro_html),
    )


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


# Article fields an issue shows (and its snapshot keeps), besides the section name and tags.
SNAPSHOT_FIELDS = ("title", "url", "synopsis", "synopsis_html", "author", "reading_minutes", "image_url",
                   "image_alt")  # fmt: skip


@dataclass
class ContentRow:
    """One article of an issue as it will be shown: from the approval
    snapshot when there is one, else from the live article."""

    link: IssueArticle
    article: Article  # the live row, or a detached copy made from the snapshot
    section_name: str
    tags: list[str]
    from_snapshot: bool


def snapshot_of(article: Article, section_name: str, tags: list[str]) -> str:
    """The JSON kept in ``IssueArticle.snapshot`` at approval."""
    values = {name: getattr(article, name) for name in SNAPSHOT_FIELDS}
    values["synopsis_html"] = article.synopsis_html or markdown_to_html(article.synopsis)
    return json.dumps({**values, "section_name": section_name, "tags": tags}, sort_keys=True)


def _from_snapshot(article: Article, snapshot: str) -> tuple[Article, str, list[str]]:
    values = json.loads(snapshot)
    copy = Article(id=article.id, published_at=article.published_at, source=article.source,
                   **{name: values.get(name) for name in SNAPSHOT_FIELDS})  # fmt: skip
    copy.synopsis = copy.synopsis or ""
    copy.synopsis_html = copy.synopsis_html or ""
    copy.author = copy.author or ""
    copy.image_alt = copy.image_alt or ""
    return copy, values.get("section_name", ""), list(values.get("tags") or [])


def issue_content(session: Session, issue: Issue) -> list[ContentRow]:
    """The issue's articles in reading order, as they will be shown."""
    rows = session.exec(
        select(IssueArticle, Article)
        .join(Article, Article.id == IssueArticle.article_id)
        .where(IssueArticle.issue_id == issue.id)
        .order_by(IssueArticle.position, IssueArticle.article_id)
    ).all()
    ids = [article.id for _, article in rows]
    slugs = {link.section for link, _ in rows}
    names = (
        {t.slug: t.name for t in session.exec(select(Tag).where(Tag.slug.in_(slugs))).all()} if slugs else {}
    )
    tags: dict[int, list[str]] = {}
    if ids:
        for article_id, name in session.exec(
            select(ArticleTag.article_id, Tag.name)
            .join(Tag, Tag.id == ArticleTag.tag_id)
            .where(ArticleTag.article_id.in_(ids))
            .order_by(Tag.name)
        ).all():
            tags.setdefault(article_id, []).append(name)
    content = []
    for link, article in rows:
        if link.snapshot:
            shown, section_name, article_tags = _from_snapshot(article, link.snapshot)
            content.append(ContentRow(link, shown, section_name or link.section, article_tags, True))
        else:
            section_name = names.get(link.section, link.section)
            content.append(ContentRow(link, article, section_name, tags.get(article.id, []), False))
    return content


def content_fields(issue: Issue, content: list[ContentRow]) -> list[tuple[str, str | None]]:
    """Every stored text an issue shows or carries, named for the editor:
    the issue's own fields and each article's (the lint's input)."""
    fields: list[tuple[str, str | None]] = [
        (f"the issue's {name}", getattr(issue, name))
        for name in ("theme", "title", "subject", "preheader", "intro")
    ]
    for row in content:
        where = f"article {row.article.id}"
        fields += [(f"{where} {name}", _text(getattr(row.article, name))) for name in SNAPSHOT_FIELDS]
        fields.append((f"{where} section name", row.section_name))
        fields += [(f"{where} tag", tag) for tag in row.tags]
    return fields


def _text(value) -> str | None:
    return None if value is None else str(value)


def content_digest(issue: Issue, content: list[ContentRow]) -> str:
    """A fingerprint of what the issue shows: the approval form carries the
    one the editor saw, so content that changed meanwhile is not approved unseen."""
    return hashlib.sha256(json.dumps(content_fields(issue, content)).encode()).hexdigest()[:32]


def inbox_preheader(session: Session, issue: Issue) -> str:
    """The preheader a reader of every section gets (the archive's and the feed's
    summary), placeholders filled from the issue's content."""
    content = issue_content(session, issue)
    names: dict[str, str] = {}
    for row in content:
        names.setdefault(row.link.section, neutralise(row.section_name))
    filled = wording.values(list(names.values()), [neutralise(row.article.title) for row in content])
    return neutralise(wording.fill(issue.preheader, filled))


def build_view(session: Session, issue: Issue, settings: Settings, variant: str = "") -> IssueView:
    """The view of ``issue`` for ``variant`` (sorted section slugs; "" = all sections)."""
    wanted = set(variant.split(",")) if variant else None
    if wanted is not None and not wanted & set(issue_sections(session, issue)):
        wanted = None  # never an empty email: fall back to every section
    by_slug: dict[str, SectionView] = {}
    for row in issue_content(session, issue):
        slug = row.link.section
        if wanted is not None and slug not in wanted:
            continue
        section = by_slug.get(slug)
        if section is None:
            section = by_slug[slug] = SectionView(slug, neutralise(row.section_name))
        section.articles.append(card_view(row.article))
    title = neutralise(issue.title) or f"{issue.label}: {neutralise(issue.theme)}"
    view = IssueView(
        number=issue.number,
        label=issue.label,
        theme=neutralise(issue.theme) or issue.label,
        title=title,
        subject=neutralise(issue.subject) or title,
        preheader="",
        intro_html=Markup(""),
        intro_text="",
        web_url=web_url(settings, issue.number),
        postal_address=neutralise(settings.postal_address),
        sections=list(by_slug.values()),
        intro_source=issue.intro or "",
        preheader_source=issue.preheader or "",
    )
    return with_copy(view)
