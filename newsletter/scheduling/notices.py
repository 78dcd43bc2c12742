"""Mails to the editors: a draft to review, an issue waiting for approval,
an empty week, missed slots, a failed job.

Sent through ``delivery.transactional.send_transactional`` with the
``review*`` templates, to ``NEWSLETTER_EDITOR_EMAILS`` or else every editor
account. A notice never stops the scheduler: a failure is logged and the
job goes on (the JobRun row records what happened either way).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from newsletter.db import get_engine
from newsletter.delivery.transactional import send_transactional
from newsletter.models import Editor
from newsletter.scheduling import slots

log = logging.getLogger("newsletter.scheduler")


def editor_addresses(settings) -> list[str]:
    if settings.editor_emails:
        return list(dict.fromkeys(settings.editor_emails))
    with get_engine().connect() as conn:
        return list(conn.execute(select(Editor.__table__.c.email).order_by(Editor.__table__.c.id)).scalars())


def preview_url(settings, number: int) -> str:
    return f"{settings.base_url}/editor/issues/{number}"


def notify(settings, template: str, subject: str, **context) -> int:
    """Send one notice to every editor; returns how many were accepted."""

    recipients = editor_addresses(settings)
    if not recipients:
        log.warning("no editor to tell (%s): set NEWSLETTER_EDITOR_EMAILS or create an editor", subject)
        return 0
    values = {
        "schedule": settings.schedule,
        "timezone": settings.timezone,
        "auto_send": settings.auto_send,
        "grace_hours": settings.misfire_grace_hours,
        "editor_url": f"{settings.base_url}/editor/",
        **context,
    }
    sent = 0
    for address in recipients:
        try:
            result = send_transactional(
                settings, to=address, subject=subject, template=template, context=values
            )
        except Exception:  # noqa: BLE001 - a notice must never stop the scheduler
            log.exception("notice %r to an editor failed", template)
            continue
        sent += 1 if result.ok else 0
    log.info("notice %r sent to %s of %s editors", template, sent, len(recipients))
    return sent


def when(settings, moment) -> str:
    return slots.describe(settings, moment)
