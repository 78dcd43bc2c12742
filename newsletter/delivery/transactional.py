"""One-off emails to one person: confirmation, welcome, review and notices.

Each message is a pair of templates, ``templates/email/<name>.mjml.j2``
(compiled to HTML by ``rendering.mjml.compile_mjml``, as issues are) and
``<name>.txt.j2`` (the text part), rendered by the same email environment as
issues (``rendering.environment``) and sent through the transport named by
``NEWSLETTER_TRANSPORT``.
"""

from __future__ import annotations

import logging

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports import SendResult, Transport, TransportError, make_transport
from newsletter.rendering.environment import email_env
from newsletter.rendering.mjml import compile_mjml

log = logging.getLogger("newsletter.transactional")


def render_transactional(settings, template: str, context: dict) -> tuple[str, str]:
    """(html, text) for ``template`` rendered with ``context``."""
    values = {"base_url": settings.base_url, "postal_address": settings.postal_address, **context}
    mjml_source = email_env().get_template(f"email/{template}.mjml.j2").render(values)
    text = email_env().get_template(f"email/{template}.txt.j2").render(values)
    return compile_mjml(mjml_source), text.strip() + "\n"


def send_transactional(
    settings,
    *,
    to: str,
    to_name: str = "",
    subject: str,
    template: str,
    context: dict,
    kind: str = "transactional",
    headers: dict[str, str] | None = None,
    transport: Transport | None = None,
) -> SendResult:
    """Render and send one email. Never raises for a delivery problem: the
    result says ``sent``, ``transient`` or ``permanent``. Pass ``transport``
    to reuse one connection for many mails (the CSV import does)."""
    html, text = render_transactional(settings, template, context)
    message = OutgoingMessage(
        sender=settings.mail_from,
        to=to,
        to_name=to_name,
        subject=subject,
        text=text,
        html=html,
        headers={"Auto-Submitted": "auto-generated", **(headers or {})},
        kind=kind,
    )
    own = transport is None
    transport = transport or make_transport(settings.transport, settings)
    try:
        result = transport.send([message])[0]
    except TransportError as exc:
        result = SendResult("transient", error=str(exc), retry_after=exc.retry_after)
    finally:
        if own:
            transport.close()
    if not result.ok:
        log.warning("%s mail %r to a reader was not sent: %s %s", kind, template, result.status, result.error)
    return result
