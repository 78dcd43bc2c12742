"""Reading the issue editor's article table from a posted form.

The form posts, for each article already in the issue, its section, its
position and a remove box, plus a rank per section (to reorder sections) and
the ids of articles to add. This module turns that into the ordered
``[(article_id, section)]`` list that ``issues.service.set_issue_articles``
takes; it validates ids and sections but decides nothing about the issue.
"""

from __future__ import annotations

from sqlmodel import Session, func, select

from newsletter.db import parse_integer
from newsletter.issues import states
from newsletter.models import Article, ArticleTag, Issue, IssueArticle, Tag

MAX_ARTICLES = 60


class EditError(ValueError):
    """The posted table is inconsistent; the message is shown."""


def current_rows(session: Session, issue: Issue) -> list[tuple[IssueArticle, Article]]:
    return list(
        session.exec(
            select(IssueArticle, Article)
            .join(Article, Article.id == IssueArticle.article_id)
            .where(IssueArticle.issue_id == issue.id)
            .order_by(IssueArticle.position, Article.id)
        ).all()
    )


def candidates(session: Session, issue: Issue, q: str = "", limit: int = 40) -> list[Article]:
    """Articles that could be added: in no issue yet (this one, or another that is not
    cancelled — sent ones included: the service refuses them anyway), not held, newest first."""
    used = (
        select(IssueArticle.article_id)
        .join(Issue, Issue.id == IssueArticle.issue_id)
        .where(Issue.status != states.CANCELLED)
    )
    stmt = select(Article).where(Article.id.not_in(used), Article.held.is_(False))
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        stmt = stmt.where(func.lower(Article.title).like(f"%{escaped}%", escape="\\"))
    return list(session.exec(stmt.order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)))


def first_section_of(session: Session, article_ids: list[int], sections: list[str]) -> dict[int, str]:
    """For articles being added: their first tag that is a section."""
    if not article_ids:
        return {}
    rows = session.exec(
        select(ArticleTag.article_id, Tag.slug)
        .join(Tag, Tag.id == ArticleTag.tag_id)
        .where(ArticleTag.article_id.in_(article_ids))
    ).all()
    order = {slug: i for i, slug in enumerate(sections)}
    best: dict[int, str] = {}
    for article_id, slug in rows:
        if slug in order and (article_id not in best or order[slug] < order[best[article_id]]):
            best[article_id] = slug
    return best


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def plan_from_form(session: Session, issue: Issue, form, sections: list[str]) -> list[tuple[int, str]]:
    """The new ordered article list for the issue from the posted form."""
    if not sections:
        raise EditError("there are no sections: tag some articles and mark the tags as sections")
    existing = {ia.article_id: ia for ia, _ in current_rows(session, issue)}
    section_rank = {slug: _int(form.get(f"section_rank_{slug}"), i + 1) for i, slug in enumerate(sections)}
    entries: list[tuple[int, int, int, str]] = []  # (section rank, position, article, section)
    for article_id, row in existing.items():
        if form.get(f"remove_{article_id}"):
            continue
        section = form.get(f"section_{article_id}", row.section)
        if section not in section_rank:
            raise EditError(f"unknown section {section[:40]!r}")
        entries.append(
            (
                section_rank[section],
                _int(form.get(f"position_{article_id}"), row.position),
                article_id,
                section,
            )
        )
    add_ids = []
    for raw in form.getlist("add"):
        article_id = parse_integer(raw)
        if article_id is not None and article_id not in existing:
            add_ids.append(article_id)
    if add_ids:
        found = set(session.exec(select(Article.id).where(Article.id.in_(add_ids), Article.held.is_(False))))
        missing = [i for i in add_ids if i not in found]
        if missing:
            raise EditError(f"article {missing[0]} does not exist or is held back")
        chosen = form.get("add_section", "")
        auto = first_section_of(session, add_ids, sections)
        tail = max((e[1] for e in entries), default=0)
        for offset, article_id in enumerate(add_ids, start=1):
            section = chosen if chosen in section_rank else auto.get(article_id, sections[0])
            entries.append((section_rank[section], tail + offset, article_id, section))
    if len(entries) > MAX_ARTICLES:
        raise EditError(f"an issue holds at most {MAX_ARTICLES} articles")
    entries.sort(key=lambda e: (e[0], e[1]))
    return [(article_id, section) for _, _, article_id, section in entries]
