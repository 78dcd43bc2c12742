"""One-off emails to one person: confirmation, welcome, review and notices.

Each message is a pair of templates, ``templates/email/<name>.mjml.j2``
(compiled to HTML with MJML) and ``<name>.txt.j2`` (the text part), sent
through the transport named by ``NEWSLETTER_TRANSPORT``. It works outside a
request (scheduler, CLI), so it keeps its own Jinja environment instead of
Flask's.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter import BRAND, TAGLINE
from newsletter.delivery.transports import (
    OutgoingMessage,
    SendResult,
    Transport,
    TransportError,
    make_transport,
)
from newsletter.rendering.mjml import SYSTEM_FONTS, compile_mjml

log = logging.getLogger("newsletter.transactional")
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


@lru_cache(maxsize=2)
def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True) if autoescape else False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(brand=BRAND, tagline=TAGLINE, system_fonts=SYSTEM_FONTS)
    return env


def render_transactional(settings, template: str, context: dict) -> tuple[str, str]:
    """(html, text) for ``template`` rendered with ``context``."""
    values = {"base_url": settings.base_url, "postal_address": settings.postal_address, **context}
    mjml_source = _environment(True).get_template(f"email/{template}.mjml.j2").render(values)
    text = _environment(False).get_template(f"email/{template}.txt.j2").render(values)
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
