"""One-off emails to one person: confirmation, welcome, review and notices.

They are never sent by the request or the job that asks for them. ``enqueue``
writes a ``TransactionalMail`` row in the caller's own transaction (the
outbox pattern): the change and its mail commit together or not at all, and
nothing waits on the mail server. The sender (``delivery.mailqueue``, run by
``serve``'s sender, the standalone scheduler and the Dramatiq workers) then
renders, sends, retries and records each one, so an SMTP outage delays these
mails and never loses them.

Each message is a pair of templates, ``templates/email/<name>.mjml.j2``
(compiled to HTML by ``rendering.mjml.compile_mjml``, as issues are) and
``<name>.txt.j2`` (the text part), rendered by the same email environment as
issues (``rendering.environment``).
"""

from __future__ import annotations

import json
import threading

from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from newsletter import clock
from newsletter.models import TransactionalMail
from newsletter.rendering.environment import email_env
from newsletter.rendering.mjml import compile_mjml

mails = TransactionalMail.__table__

# Set after a transaction that queued mail commits, so a sender in this process
# (``serve``) sends it at once instead of at its next look.
queued = threading.Event()
_QUEUED_KEY = "newsletter.mail_queued"


def render_transactional(settings, template: str, context: dict) -> tuple[str, str]:
    """(html, text) for ``template`` rendered with ``context``."""
    values = {"base_url": settings.base_url, "postal_address": settings.postal_address, **context}
    mjml_source = email_env().get_template(f"email/{template}.mjml.j2").render(values)
    text = email_env().get_template(f"email/{template}.txt.j2").render(values)
    return compile_mjml(mjml_source), text.strip() + "\n"


def enqueue(
    session,
    *,
    kind: str,
    to: str,
    subject: str,
    template: str,
    context: dict,
    to_name: str = "",
    headers: dict[str, str] | None = None,
    subscriber_id: int | None = None,
) -> None:
    """Queue one mail in the caller's transaction (``session`` is an ORM
    session or a Core connection). ``context`` must be JSON: the mail is
    rendered when it is sent. Raises ValueError for a header or address that
    carries a line break (nothing is queued that could never be sent)."""
    for value in (to, to_name, subject, *(headers or {}).values(), *(headers or {})):
        if "\r" in value or "\n" in value:
            raise ValueError("a line break in a mail header")
    now = clock.now()
    session.execute(
        insert(mails).values(
            kind=kind[:30],
            template=template,
            subject=subject[:300],
            to_email=to,
            to_name=to_name[:200],
            subscriber_id=subscriber_id,
            context=json.dumps(context),
            headers=json.dumps(headers or {}),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
            updated_at=now,
        )
    )
    mark_queued(session)


def mark_queued(session) -> None:
    """Wake this process's sender once ``session`` commits (ORM sessions only:
    other senders find the mail at their next look)."""
    if isinstance(session, Session):
        session.info[_QUEUED_KEY] = True


@event.listens_for(Session, "after_commit")
def _wake_sender(session) -> None:
    if session.info.pop(_QUEUED_KEY, False):
        queued.set()
