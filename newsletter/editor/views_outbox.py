"""Outbox viewer for the ``outbox://`` transport (admin: it holds addresses
and readers' personal links). ``/outbox`` (``readers.outbox``) leads here."""

from __future__ import annotations

from flask import abort, render_template, request

from newsletter.db import session_scope
from newsletter.delivery.transports.outbox import ParsedMail, outbox_page, parse_outbox
from newsletter.editor.auth import admin_required
from newsletter.editor.views import bp
from newsletter.models import OutboxMessage
from newsletter.web import int_arg, mail_html_response, text_arg


@bp.get("/outbox")
@admin_required
def outbox():
    q = text_arg("q", 200)
    kind = request.args.get("kind", "")
    with session_scope() as db:
        page = outbox_page(db, q=q, kind=kind, before=int_arg("before"))
    return render_template("editor/outbox.html", page=page, q=q, kind=kind)


def load_message(message_id: int) -> tuple[OutboxMessage, ParsedMail]:
    """The stored message and its parts, or 404."""
    with session_scope() as db:
        message = db.get(OutboxMessage, message_id)
        if message is None:
            abort(404)
    return message, parse_outbox(message.raw)


@bp.get("/outbox/<int:message_id>")
@admin_required
def outbox_message(message_id: int):
    message, parsed = load_message(message_id)
    return render_template("editor/outbox_message.html", message=message, parsed=parsed)


@bp.get("/outbox/<int:message_id>/body.html")
@admin_required
def outbox_html(message_id: int):
    _, parsed = load_message(message_id)
    # links open in the page around the frame: the demo confirms a subscription from here
    return mail_html_response(
        parsed.html or "<p>(this message has no HTML part)</p>", links_in_top_window=True
    )
