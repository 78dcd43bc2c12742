"""Outbox viewer for the ``outbox://`` transport (admin: it holds addresses)."""

from __future__ import annotations

from flask import abort, make_response, render_template, request

from newsletter.db import session_scope
from newsletter.editor import bp, queries
from newsletter.editor.auth import admin_required
from newsletter.models import OutboxMessage

# Mail HTML needs inline styles; nothing in it may run or load from outside.
MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"


def mail_html_response(html: str):
    """Serve email HTML for a sandboxed iframe, under its own strict CSP."""
    response = make_response(html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Security-Policy"] = MAIL_CSP
    return response


@bp.get("/outbox")
@admin_required
def outbox():
    q = request.args.get("q", "").strip()[:200]
    kind = request.args.get("kind", "")
    before = request.args.get("before", "")
    with session_scope() as db:
        page = queries.outbox_page(db, q=q, kind=kind, before=int(before) if before.isdigit() else None)
    return render_template("editor/outbox.html", page=page, q=q, kind=kind)


def _load(message_id: int) -> tuple[OutboxMessage, queries.ParsedMail]:
    with session_scope() as db:
        message = db.get(OutboxMessage, message_id)
        if message is None:
            abort(404)
    return message, queries.parse_outbox(message.raw)


@bp.get("/outbox/<int:message_id>")
@admin_required
def outbox_message(message_id: int):
    message, parsed = _load(message_id)
    return render_template("editor/outbox_message.html", message=message, parsed=parsed)


@bp.get("/outbox/<int:message_id>/body.html")
@admin_required
def outbox_html(message_id: int):
    _, parsed = _load(message_id)
    return mail_html_response(parsed.html or "<p>(this message has no HTML part)</p>")
