"""Subscribers (admin): search, open one, CSV import/export, unsubscribe, erase.

The actions call the readers' services (``readers.service`` and
``readers.csv_io``): the editor adds no second way to change a reader.
"""

from __future__ import annotations

import tempfile

from flask import Response, abort, flash, redirect, render_template, request, url_for

from newsletter import clock
from newsletter.db import session_scope
from newsletter.editor import queries
from newsletter.editor.auth import admin_required
from newsletter.editor.dashboard import subscriber_counts
from newsletter.editor.forms import ActionForm, ImportForm
from newsletter.editor.views import bp
from newsletter.extensions import settings
from newsletter.models import SUBSCRIBER_STATUSES, Subscriber
from newsletter.readers.csv_io import export_csv, import_csv
from newsletter.readers.service import erase, unsubscribe
from newsletter.web import int_arg


@bp.get("/subscribers")
@admin_required
def subscribers():
    q = request.args.get("q", "").strip()[:320]
    status = request.args.get("status", "")
    if status not in SUBSCRIBER_STATUSES:
        status = ""
    with session_scope() as db:
        page = queries.search_subscribers(db, q=q, status=status, before=int_arg("before"))
        counts = subscriber_counts(db)
    return render_template(
        "editor/subscribers.html", page=page, q=q, status=status, statuses=SUBSCRIBER_STATUSES, counts=counts
    )


def _subscriber_or_404(db, subscriber_id: int) -> Subscriber:
    subscriber = db.get(Subscriber, subscriber_id)
    if subscriber is None:
        abort(404)
    return subscriber


@bp.get("/subscribers/<int:subscriber_id>")
@admin_required
def subscriber(subscriber_id: int):
    with session_scope() as db:
        reader = _subscriber_or_404(db, subscriber_id)
        deliveries, events = queries.subscriber_history(db, subscriber_id)
    return render_template(
        "editor/subscriber.html", s=reader, deliveries=deliveries, events=events, action=ActionForm()
    )


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@admin_required
def subscriber_unsubscribe(subscriber_id: int):

    with session_scope() as db:
        reader = _subscriber_or_404(db, subscriber_id)
        unsubscribe(db, reader, "editor")
        address = reader.email
    flash(f"{address} is unsubscribed.", "success")
    return redirect(url_for("editor.subscriber", subscriber_id=subscriber_id))


@bp.route("/subscribers/<int:subscriber_id>/erase", methods=["GET", "POST"])
@admin_required
def subscriber_erase(subscriber_id: int):

    form = ActionForm()
    with session_scope() as db:
        reader = _subscriber_or_404(db, subscriber_id)
        if request.method == "POST" and form.validate_on_submit():
            if request.form.get("confirm_email", "").strip().lower() != reader.email.lower():
                flash("Type the reader's address exactly to confirm the erasure.", "error")
            else:
                erase(db, reader)
                flash("The reader and their records are erased; the address is suppressed.", "success")
                return redirect(url_for("editor.subscribers"))
        address = reader.email
    return render_template(
        "editor/subscriber_erase.html", subscriber_id=subscriber_id, address=address, form=form
    )


@bp.route("/subscribers/import", methods=["GET", "POST"])
@admin_required
def subscribers_import():

    form = ImportForm()
    report = None
    if form.validate_on_submit():
        try:
            report = import_csv(
                settings(), form.file.data.stream, pending=bool(form.pending.data), source="import"
            )
        except ValueError as exc:
            flash(f"The file was not imported: {exc}", "error")
        else:
            level = "success" if not report.rejected_total else "warning"
            flash(
                f"Imported {report.imported} new, updated {report.updated}, rejected {report.rejected_total} line"
                f"{'' if report.rejected_total == 1 else 's'}.",
                level,
            )
    return render_template("editor/subscribers_import.html", form=form, report=report)


@bp.get("/subscribers/export.csv")
@admin_required
def subscribers_export():
    """Stream the export: written to a spooled temp file (disk past 8 MB),
    then sent in chunks, so a million readers never sit in memory."""

    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+", encoding="utf-8", newline="")
    with session_scope() as db:
        export_csv(db, spool)
    spool.seek(0)

    def chunks():
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    name = f"subscribers-{clock.now():%Y%m%d-%H%M}.csv"
    return Response(
        chunks(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
