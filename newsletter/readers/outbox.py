"""``/outbox``: the mail kept by the ``outbox://`` transport, readable in the
browser while the app runs in development (404 in production), so a
newcomer running ``newsletter demo`` can follow a confirmation link.

The HTML part is served by its own route with its own strict CSP and shown
in a sandboxed iframe: email HTML needs inline styles, and nothing in it may
run script or reach the network.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as default_policy

from flask import Response, abort, render_template, request
from markupsafe import Markup, escape
from sqlmodel import select

from newsletter.app import settings
from newsletter.db import session_scope
from newsletter.models import OutboxMessage
from newsletter.readers import bp

PAGE_SIZE = 50
_URL = re.compile(r"https?://[^\s<>\"')]+")
RAW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)


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


def _parts(raw: bytes) -> tuple[object, str, str | None]:
    message = message_from_bytes(raw, policy=default_policy)
    text, html = "", None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "text/plain" and not text:
            text = part.get_content()
        elif kind == "text/html" and html is None:
            html = part.get_content()
    return message, text, html


@bp.get("/outbox")
def outbox():
    _development_only()
    before = request.args.get("before", type=int)
    with session_scope() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(PAGE_SIZE)
        if before:
            query = query.where(OutboxMessage.id < before)
        rows = [
            dict(id=m.id, created_at=m.created_at, kind=m.kind, recipient=m.recipient, subject=m.subject)
            for m in session.exec(query).all()
        ]
    older = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return render_template("readers/outbox_list.html", rows=rows, older=older)


def _get(message_id: int) -> OutboxMessage:
    with session_scope() as session:
        row = session.get(OutboxMessage, message_id)
    if row is None:
        abort(404)
    return row


@bp.get("/outbox/<int:message_id>")
def outbox_message(message_id: int):
    _development_only()
    row = _get(message_id)
    message, text, html = _parts(row.raw)
    headers = [(k, str(v)) for k, v in message.items()]
    return render_template(
        "readers/outbox_message.html", row=row, headers=headers, text=linkify(text), has_html=html is not None
    )


@bp.get("/outbox/<int:message_id>/html")
def outbox_html(message_id: int):
    _development_only()
    _, _, html = _parts(_get(message_id).raw)
    if html is None:
        abort(404)
    # Links open in the top window (the iframe is sandboxed), so the confirm button works.
    html = re.sub(r"(<head[^>]*>)", r'\1<base target="_top">', html, count=1, flags=re.I)
    html = re.sub(r"""target=(["'])_blank\1""", 'target="_top"', html, flags=re.I)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = RAW_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
