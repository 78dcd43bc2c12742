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
from newsletter.rendering import placeholders
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
    """Compile a prepared view: Jinja + MJML for HTML, Jinja for text (no database).

    The markers get a fresh nonce; the output must hold exactly the markers
    the templates printed (``placeholders.MarkerError`` otherwise)."""
    nonce = placeholders.new_nonce()
    html_markers = placeholders.Printed(nonce, html=True)
    text_markers = placeholders.Printed(nonce, html=False)
    render = IssueRender(
        issue_id=issue.id,
        variant=variant,
        subject=view.subject,
        html=render_html(view, html_markers),
        text=render_text(view, text_markers),
        nonce=nonce,
    )
    placeholders.verify(nonce, render.html, html_markers.counts, "HTML")
    placeholders.verify(nonce, render.text, text_markers.counts, "text part")
    return render


def _frozen(session: Session, issue: Issue, variant: str, settings: Settings) -> IssueRender:
    """A variant as it is stored for sending: compiled, article links pointed
    at the counting redirect when click counts are on, and checked again that
    the rewriting left the markers exactly as they were."""
    render = render_variant(session, issue, variant, settings)
    html = placeholders.found(render.nonce, render.html)
    text = placeholders.found(render.nonce, render.text)
    render = apply_click_counts(render, settings)
    placeholders.verify(render.nonce, render.html, html, "HTML")
    placeholders.verify(render.nonce, render.text, text, "text part")
    return render


def variants_needed(session: Session, issue: Issue, extra_topics: Iterable[str] = ()) -> set[str]:
    """ "" plus the variant of every distinct topics value among active readers."""
    sections = issue_sections(session, issue)
    topics = session.exec(select(Subscriber.topics).where(Subscriber.status == "active").distinct()).all()
    return {""} | {variant_for(t or "", sections) for t in [*topics, *extra_topics]}


def freeze_issue(session: Session, issue: Issue, settings: Settings) -> dict[str, IssueRender]:
    """Compile and store every variant active readers need (once each); idempotent.

    Existing renders are kept as they are — what was frozen is what is sent.
    Does not commit (the caller's unit of work does). Raises
    ``placeholders.MarkerError`` for a render whose markers are not exactly
    its template's, so the send that freezes it never starts.
    """
    renders = {
        r.variant: r for r in session.exec(select(IssueRender).where(IssueRender.issue_id == issue.id)).all()
    }
    for variant in sorted(variants_needed(session, issue) - renders.keys()):
        render = _frozen(session, issue, variant, settings)
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
    render = _frozen(session, issue, variant, settings)
    try:
        with session.begin_nested():
            session.add(render)
    except IntegrityError:
        return session.exec(
            select(IssueRender).where(IssueRender.issue_id == issue.id, IssueRender.variant == variant)
        ).one()
    return render
