"""Previews: an issue as one reader (or one set of topics) would get it.

Rendered fresh from the current content (nothing stored; an approved issue
from its approval snapshot), personalised the same way a sent message is,
so the preview is what will be sent. The lint shown with it starts with the
content errors that block approval (``issues.service.content_problems``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.issues.service import content_problems, require_issue
from newsletter.models import Subscriber
from newsletter.rendering.issue import issue_sections, render_variant, variant_for
from newsletter.rendering.lint import LintFinding, lint_html
from newsletter.rendering.personalise import Personalised, personalise

PREVIEW_SUBSCRIBER_ID = 0  # links in previews lead to an "invalid link" page, never to a real reader


class PreviewError(LookupError):
    pass


@dataclass
class Preview:
    variant: str
    message: Personalised
    lint: list[LintFinding]


def build_preview(
    settings: Settings, number: int, *, as_email: str | None = None, topics: str | None = None
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
        render = render_variant(session, issue, variant, settings)
        problems = content_problems(session, issue)  # errors that block approval come first
    message = personalise(render, settings, subscriber_id=subscriber_id, email=as_email or "", name=name)
    return Preview(variant, message, problems + lint_html(message.html, settings.base_url))


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
