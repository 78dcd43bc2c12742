"""Rendering an issue: variants, frozen renders, previews.

A *variant* is the set of sections a reader gets, written as the sorted,
comma-separated section slugs, with "" meaning "all sections". Readers with
no topics get all sections; so do readers whose topics match none of this
issue's sections (an empty email would be worse than a full one, and their
preferences link lets them narrow it); and readers whose topics cover every
section of the issue share the "" render.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import clock
from newsletter.config import Settings
from newsletter.models import Issue, IssueRender, Subscriber
from newsletter.rendering.clicks import apply_click_counts
from newsletter.rendering.compiled import render_html, render_text
from newsletter.rendering.view import IssueView, build_view, issue_sections

__all__ = [
    "variant_for",
    "issue_sections",
    "render_variant",
    "freeze_issue",
    "ensure_variant",
    "variants_needed",
]


def variant_for(topics: str, sections: list[str]) -> str:
    """The variant a reader with ``topics`` (Subscriber.topics) gets of an issue with ``sections``."""
    if not topics:
        return ""
    chosen = set(topics.split(","))
    mine = [s for s in sections if s in chosen]
    if not mine or len(mine) == len(set(sections)):
        return ""
    return ",".join(sorted(mine))


def render_variant(session: Session, issue: Issue, variant: str, settings: Settings) -> IssueRender:
    """Compile one variant (unsaved IssueRender; the caller decides whether to keep it)."""
    return render_view(issue, build_view(session, issue, settings, variant), variant)


def render_view(issue: Issue, view: IssueView, variant: str) -> IssueRender:
    """Compile a prepared view: Jinja + MJML for HTML, Jinja for text (no database)."""
    return IssueRender(
        issue_id=issue.id,
        variant=variant,
        subject=view.subject,
        html=render_html(view),
        text=render_text(view),
    )


def variants_needed(session: Session, issue: Issue, extra_topics: Iterable[str] = ()) -> set[str]:
    """ "" plus the variant of every distinct topics value among active readers."""
    sections = issue_sections(session, issue)
    topics = session.exec(select(Subscriber.topics).where(Subscriber.status == "active").distinct()).all()
    return {""} | {variant_for(t or "", sections) for t in [*topics, *extra_topics]}


def freeze_issue(session: Session, issue: Issue, settings: Settings) -> dict[str, IssueRender]:
    """Compile and store every variant active readers need (once each); idempotent.

    Existing renders are kept as they are — what was frozen is what is sent.
    Does not commit (the caller's unit of work does).
    """
    renders = {
        r.variant: r for r in session.exec(select(IssueRender).where(IssueRender.issue_id == issue.id)).all()
    }
    for variant in sorted(variants_needed(session, issue) - renders.keys()):
        render = apply_click_counts(render_variant(session, issue, variant, settings), settings)
        session.add(render)
        renders[variant] = render
    session.flush()
    if issue.frozen_at is None:
        issue.frozen_at = clock.now()
        session.add(issue)
    return renders


def ensure_variant(session: Session, issue: Issue, variant: str, settings: Settings) -> IssueRender:
    """The stored render of ``variant``, compiled and stored now if a reader
    changed topics after the freeze. Safe against a concurrent sender doing the same."""
    existing = session.exec(
        select(IssueRender).where(IssueRender.issue_id == issue.id, IssueRender.variant == variant)
    ).first()
    if existing is not None:
        return existing
    render = apply_click_counts(render_variant(session, issue, variant, settings), settings)
    try:
        with session.begin_nested():
            session.add(render)
    except IntegrityError:
        return session.exec(
            select(IssueRender).where(IssueRender.issue_id == issue.id, IssueRender.variant == variant)
        ).one()
    return render
