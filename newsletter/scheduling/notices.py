"""Mails to the editors: a draft to review, an issue waiting for approval,
an empty week, missed slots, a failed job.

Queued (``delivery.transactional.enqueue``) with the ``review*`` templates,
to ``NEWSLETTER_EDITOR_EMAILS`` or else every editor account, in the same
transaction as the scheduler's record of what happened (``runs.move(…,
then=notices.notice(…))``), so the record and its notice commit together;
the sender delivers them with retries. A notice never stops the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from newsletter.db import get_engine
from newsletter.delivery.transactional import enqueue
from newsletter.models import Editor
from newsletter.scheduling import slots

log = logging.getLogger("newsletter.scheduler")

editors = Editor.__table__


def editor_addresses(settings, connection) -> list[str]:
    if settings.editor_emails:
        return list(dict.fromkeys(settings.editor_emails))
    return list(
        connection.execute(
            select(editors.c.email).where(editors.c.disabled_at.is_(None)).order_by(editors.c.id)
        ).scalars()
    )


def preview_url(settings, number: int) -> str:
    return f"{settings.base_url}/editor/issues/{number}"


def notify(settings, template: str, subject: str, *, within=None, **context) -> int:
    """Queue one notice to every editor, in the transaction ``within`` (a
    connection) or in one of its own; returns how many were queued."""
    if within is None:
        with get_engine().begin() as connection:
            return notify(settings, template, subject, within=connection, **context)
    recipients = editor_addresses(settings, within)
    if not recipients:
        log.warning("no editor to tell (%s): set NEWSLETTER_EDITOR_EMAILS or create an editor", subject)
        return 0
    values = {
        "schedule": settings.schedule,
        "timezone": settings.timezone,
        "auto_send": settings.auto_send,
        "grace_hours": settings.misfire_grace_hours,
        "local_time": settings.local_time_delivery,  # the slot is each reader's own time: say so
        "editor_url": f"{settings.base_url}/editor/",
        **context,
    }
    for address in recipients:
        enqueue(within, kind="notice", to=address, subject=subject, template=template, context=values)
    log.info("notice %r queued for %s editors", template, len(recipients))
    return len(recipients)


def notice(settings, template: str, subject: str, **context) -> Callable[[object], int]:
    """``notify`` for later, in a transaction the caller opens (``runs.move(…, then=…)``)."""
    return lambda connection: notify(settings, template, subject, within=connection, **context)


def when(settings, moment) -> str:
    return slots.describe(settings, moment)
