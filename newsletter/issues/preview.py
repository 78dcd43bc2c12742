"""Previews: an issue as one reader (or one set of topics) would get it.

Rendered fresh from the current content (nothing stored; an approved issue
from its approval snapshot), personalised the same way a sent message is,
so the preview is what will be sent. The lint shown with it starts with the
content errors that block approval (``issues.service.content_problems``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.issues.service import content_problems, require_issue
from newsletter.models import Issue, Subscriber
from newsletter.rendering.issue import issue_sections, render_view, variant_for, variants_needed
from newsletter.rendering.lint import LintFinding, lint_html
from newsletter.rendering.personalise import Personalised, personalise
from newsletter.rendering.view import build_view

PREVIEW_SUBSCRIBER_ID = 0  # links in previews lead to an "invalid link" page, never to a real reader


class PreviewError(LookupError):
    pass


@dataclass
class InboxLine:
    """How one variant shows in an inbox: for whom, the subject and the preheader."""

    variant: str
    readers_of: str  # "every section" or the variant's section names
    subject: str
    preheader: str


@dataclass
class Preview:
    variant: str
    message: Personalised
    lint: list[LintFinding]
    preheader: str = ""
    inbox_lines: list[InboxLine] = field(default_factory=list)


def inbox_lines(session: Session, issue: Issue, settings: Settings, also: str = "") -> list[InboxLine]:
    """The inbox line of every variant the issue's active readers need (and ``also``),
    from one reading of the content (``IssueView.only`` refills the copy per variant)."""
    full = build_view(session, issue, settings, "")
    lines = []
    for variant in sorted(variants_needed(session, issue) | {also}, key=lambda v: (v != "", v)):
        view = full.only(variant)
        names = ", ".join(s.name for s in view.sections)
        lines.append(
            InboxLine(variant, "every section" if not variant else names, view.subject, view.preheader)
        )
    return lines


def build_preview(
    settings: Settings,
    number: int,
    *,
    as_email: str | None = None,
    topics: str | None = None,
    with_inbox_lines: bool = False,
) -> Preview:
    with session_scope() as session:
        issue = require_issue(session, number)
        subscriber_id, name = PREVIEW_SUBSCRIBER_ID, ""
        if as_email:
            reader = session.exec(
                select(Subscriber).where(Subscriber.email == as_email.strip().lower())
            ).first()
            if reader is None:
                raise PreviewError(f"no subscriber with the address {as_email}")
            subscriber_id, name, topics = reader.id, reader.name, reader.topics
        topics = ",".join(sorted(t.strip() for t in (topics or "").split(",") if t.strip()))
        variant = variant_for(topics, issue_sections(session, issue))
        view = build_view(session, issue, settings, variant)
        render = render_view(issue, view, variant)
        problems = content_problems(session, issue)  # errors that block approval come first
        lines = inbox_lines(session, issue, settings, variant) if with_inbox_lines else []
    message = personalise(render, settings, subscriber_id=subscriber_id, email=as_email or "", name=name)
    return Preview(
        variant, message, problems + lint_html(message.html, settings.base_url), view.preheader, lines
    )


def preview_issue(
    settings: Settings,
    number: int,
    *,
    as_email: str | None = None,
    topics: str | None = None,
    text: bool = False,
) -> str:
    """The HTML (or with ``text`` the text part) of ``number`` as a reader would get it."""
    preview = build_preview(settings, number, as_email=as_email, topics=topics)
    return preview.message.text if text else preview.message.html
