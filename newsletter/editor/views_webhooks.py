"""Admin page for outgoing webhooks: add an endpoint (its signing secret shown
once), remove one, and the delivery log (the queue rows of kind ``webhook``:
status, attempts, next try, last error). Faces over ``delivery.webhooks``
and ``delivery.mailqueue`` (a failed delivery is retried from the mail page)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from newsletter.db import session_scope
from newsletter.delivery import mailqueue, webhooks
from newsletter.editor.auth import admin_required
from newsletter.editor.forms import ActionForm, WebhookForm
from newsletter.editor.views import bp
from newsletter.models import WEBHOOK_EVENTS


def _page(form: WebhookForm, *, made=None, status: int = 200):
    with session_scope() as db:
        endpoints = webhooks.list_endpoints(db)
        log = mailqueue.listing(db, kind=webhooks.KIND, size=50)
    return (
        render_template(
            "editor/webhooks.html",
            form=form,
            endpoints=endpoints,
            log=log,
            made=made,
            events=WEBHOOK_EVENTS,
            action=ActionForm(),
        ),  # fmt: skip
        status,
    )


@bp.route("/webhooks", methods=["GET", "POST"])
@admin_required
def webhooks_page():
    form = WebhookForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            flash("Give a URL and at least one event.", "error")
            return _page(form, status=400)
        try:
            with session_scope() as db:
                row = webhooks.create_endpoint(
                    db, url=form.url.data, events=form.events.data, created_by=current_user.email
                )
                made = {"url": row.url, "secret": row.secret, "events": row.event_list}
        except webhooks.WebhookError as exc:
            form.url.errors = [*form.url.errors, str(exc)]
            return _page(form, status=400)
        return _page(WebhookForm(formdata=None), made=made)
    return _page(form)


@bp.post("/webhooks/<int:endpoint_id>/delete")
@admin_required
def webhook_delete(endpoint_id: int):
    try:
        with session_scope() as db:
            url = webhooks.remove_endpoint(db, endpoint_id).url
        flash(f"Webhook to {url} removed.", "success")
    except LookupError as exc:
        flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("editor.webhooks_page"))
