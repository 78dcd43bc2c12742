"""The transactional mail queue (admin: it holds addresses): confirmations,
welcomes and notices waiting for the sender, sent, or failed — and a retry
for the failed ones. The same service as ``newsletter mail list|retry``."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from newsletter.db import session_scope
from newsletter.delivery import mailqueue
from newsletter.editor.auth import admin_required
from newsletter.editor.forms import ActionForm
from newsletter.editor.views import bp
from newsletter.models import MAIL_STATUSES


@bp.get("/mail")
@admin_required
def mail_queue():
    status = request.args.get("status", "")
    status = status if status in MAIL_STATUSES else ""
    before = request.args.get("before", "")
    with session_scope() as db:
        counts = mailqueue.counts(db)
        rows = mailqueue.listing(db, status=status, before=int(before) if before.isdigit() else None, size=51)
        oldest = mailqueue.oldest_waiting(db)
    more = len(rows) > 50
    rows = rows[:50]
    return render_template(
        "editor/mail.html",
        counts=counts,
        rows=rows,
        status=status,
        statuses=MAIL_STATUSES,
        oldest=oldest,
        next_before=rows[-1].id if more and rows else None,
        action=ActionForm(),
    )


@bp.post("/mail/<int:mail_id>/retry")
@admin_required
def mail_retry(mail_id: int):
    ActionForm()  # CSRF is checked for every POST by CSRFProtect
    with session_scope() as db:
        done = mailqueue.retry(db, mail_id)
    flash(
        "Queued again." if done else "That mail is not failed (nothing to retry).",
        "success" if done else "warning",
    )
    return redirect(url_for("editor.mail_queue", status=request.args.get("status", "")))


@bp.post("/mail/retry-failed")
@admin_required
def mail_retry_failed():
    with session_scope() as db:
        count = mailqueue.retry(db)
    flash(f"{count} failed mail{'s' if count != 1 else ''} queued again.", "success")
    return redirect(url_for("editor.mail_queue"))
