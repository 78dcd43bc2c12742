"""Subscribers (admin): search, open one, CSV import/export, unsubscribe, erase.

The actions call the readers' services (``readers.service`` and
``readers.csv_io``): the editor adds no second way to change a reader.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.utils import secure_filename

from newsletter import clock, queries
from newsletter.db import session_scope
from newsletter.editor import uploads
from newsletter.editor.auth import admin_required
from newsletter.editor.forms import ActionForm, ImportForm, ImportRunForm
from newsletter.editor.views import bp
from newsletter.extensions import settings
from newsletter.models import SUBSCRIBER_STATUSES, Subscriber
from newsletter.queries import subscriber_counts
from newsletter.readers.csv_io import ImportFormatError, export_csv, import_csv
from newsletter.readers.service import erase, unsubscribe
from newsletter.web import int_arg, spooled_download, text_arg


@bp.get("/subscribers")
@admin_required
def subscribers():
    q = text_arg("q", 320)
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


def _import(stream, *, name: str, source: str, encoding: str, pending: bool, update: bool, dry_run: bool):
    """The one import call of both steps (preview and import): the same
    options give the same result, the preview in a transaction rolled back."""
    return import_csv(
        settings(),
        stream,
        pending=pending,
        update=update,
        dry_run=dry_run,
        from_service=source or None,
        encoding=encoding or None,
        name=name,
    )


@bp.route("/subscribers/import", methods=["GET", "POST"])
@admin_required
def subscribers_import():
    """Step one: upload and preview (nothing is written), with the button
    that runs the same import."""
    form = ImportForm()
    preview = run = None
    if form.validate_on_submit():
        upload = form.file.data
        name = secure_filename(upload.filename or "") or "upload.csv"
        token = uploads.keep(settings().instance_path, upload.stream)
        options = dict(
            source=form.source.data,
            encoding=form.encoding.data,
            pending=form.pending.data,
            update=form.update.data,
        )
        try:
            with uploads.path_of(settings().instance_path, token).open("rb") as stream:
                preview = _import(stream, name=name, dry_run=True, **options)
        except ImportFormatError as exc:
            uploads.discard(settings().instance_path, token)
            flash(f"The file was not imported: {exc}", "error")
        else:
            run = ImportRunForm(
                formdata=None,
                upload=token,
                name=name,
                source=options["source"],
                encoding=options["encoding"],
                pending="y" if options["pending"] else "",
                update="y" if options["update"] else "",
            )
    return render_template("editor/subscribers_import.html", form=form, preview=preview, run=run, report=None)


@bp.post("/subscribers/import/run")
@admin_required
def subscribers_import_run():
    """Step two: the import the preview showed, from the kept upload."""
    run = ImportRunForm()
    if not run.validate_on_submit():
        flash("The import could not start: the form was not valid. Upload the file again.", "error")
        return redirect(url_for("editor.subscribers_import"))
    path = uploads.path_of(settings().instance_path, run.upload.data)
    if path is None:
        flash("That upload is gone (uploads are kept for an hour). Upload the file again.", "error")
        return redirect(url_for("editor.subscribers_import"))
    try:
        with path.open("rb") as stream:
            report = _import(
                stream,
                name=run.name.data or "upload.csv",
                source=run.source.data,
                encoding=run.encoding.data,
                pending=run.pending.data == "y",
                update=run.update.data == "y",
                dry_run=False,
            )
    except ImportFormatError as exc:
        flash(f"The file was not imported: {exc}", "error")
        return redirect(url_for("editor.subscribers_import"))
    finally:
        uploads.discard(settings().instance_path, run.upload.data)
    level = "success" if not report.rejected_total else "warning"
    flash(
        f"Imported {report.imported} new, updated {report.updated}, rejected {report.rejected_total} line"
        f"{'' if report.rejected_total == 1 else 's'}.",
        level,
    )
    return render_template(
        "editor/subscribers_import.html",
        form=ImportForm(formdata=None),
        preview=None,
        run=None,
        report=report,
    )


@bp.get("/subscribers/export.csv")
@admin_required
def subscribers_export():
    """Stream the export: written to a spooled temp file (disk past 8 MB),
    then sent in chunks, so a million readers never sit in memory."""

    with session_scope() as db:
        name = f"subscribers-{clock.now():%Y%m%d-%H%M}.csv"
        return spooled_download(lambda out: export_csv(db, out), mimetype="text/csv", filename=name)
