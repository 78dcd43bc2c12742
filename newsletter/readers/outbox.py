"""``/outbox``: the mail kept by the ``outbox://`` transport, readable in the
browser while the app runs in development (404 in production), so a
newcomer running ``newsletter demo`` can follow a confirmation link.

It reads the outbox as the editor's viewer does (``transports.outbox``) and
serves the HTML part the same way (``web.mail_html_response``), with links
opening in the top window so the confirm button works from the frame.
"""

from __future__ import annotations

import re

from flask import abort, render_template, request
from markupsafe import Markup, escape

from newsletter.db import session_scope
from newsletter.delivery.transports.outbox import outbox_page, parse_outbox
from newsletter.extensions import settings
from newsletter.models import OutboxMessage
from newsletter.readers.views import bp
from newsletter.web import mail_html_response

_URL = re.compile(r"https?://[^\s<>\"')]+")


def _development_only() -> None:
    if settings().env not in ("development", "testing"):
        abort(404)


def linkify(text: str) -> Markup:
    """Escape ``text`` and turn its URLs into links."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last : match.start()]))
        url = match.group(0)
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _message(message_id: int):
    with session_scope() as session:
        row = session.get(OutboxMessage, message_id)
    if row is None:
        abort(404)
    return row, parse_outbox(row.raw)


@bp.get("/outbox")
def outbox():
    _development_only()
    with session_scope() as session:
        page = outbox_page(session, before=request.args.get("before", type=int))
    return render_template("readers/outbox_list.html", rows=page.rows, older=page.next_before)


@bp.get("/outbox/<int:message_id>")
def outbox_message(message_id: int):
    _development_only()
    row, parsed = _message(message_id)
    return render_template(
        "readers/outbox_message.html",
        row=row,
        headers=parsed.headers,
        text=linkify(parsed.text or ""),
        has_html=parsed.html is not None,
    )


@bp.get("/outbox/<int:message_id>/html")
def outbox_html(message_id: int):
    _development_only()
    _, parsed = _message(message_id)
    if parsed.html is None:
        abort(404)
    return mail_html_response(parsed.html, links_in_top_window=True)
