"""Admin pages for the JSON API: tokens (create — the secret shown once —,
list with last use, revoke) and the audit log; and the hook that records
every change an editor makes in the audit log too.

Thin faces over ``access.tokens`` and ``access.audit`` (the CLI's
``newsletter token`` commands call the same functions).
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from newsletter.access import audit, tokens
from newsletter.db import session_scope
from newsletter.editor.auth import admin_required
from newsletter.editor.forms import ActionForm, TokenForm
from newsletter.editor.views import bp
from newsletter.models import API_SCOPES
from newsletter.web import int_arg, text_arg

NOT_CHANGES = {
    "editor.login",
    "editor.logout",
}  # sessions, not changes (login attempts are throttled and logged)


def _tokens_page(form: TokenForm, *, secret: str | None = None, made=None, status: int = 200):
    with session_scope() as db:
        rows = tokens.list_tokens(db)
    return (
        render_template(
            "editor/api_tokens.html",
            form=form,
            rows=rows,
            secret=secret,
            made=made,
            scopes=API_SCOPES,
            action=ActionForm(),
        ),  # fmt: skip
        status,
    )


@bp.route("/api-tokens", methods=["GET", "POST"])
@admin_required
def api_tokens():
    form = TokenForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            flash("Give the token a name and at least one scope.", "error")
            return _tokens_page(form, status=400)
        try:
            with session_scope() as db:
                row, secret = tokens.create_token(
                    db, name=form.name.data, scopes=form.scopes.data, created_by=current_user.email
                )
                made = {"id": row.id, "name": row.name, "scopes": row.scope_list}
        except tokens.TokenInvalid as exc:
            form.name.errors = [*form.name.errors, str(exc)]
            return _tokens_page(form, status=400)
        # Shown in this answer only (never stored, never redirected through a URL or the session).
        return _tokens_page(TokenForm(formdata=None), secret=secret, made=made)
    return _tokens_page(form)


@bp.post("/api-tokens/<int:token_id>/revoke")
@admin_required
def api_token_revoke(token_id: int):
    try:
        with session_scope() as db:
            name = tokens.revoke_token(db, token_id).name
        flash(f"Token “{name}” is revoked; it no longer works.", "success")
    except LookupError as exc:
        flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("editor.api_tokens"))


@bp.get("/audit")
@admin_required
def audit_log():
    actor = text_arg("actor", 100)
    with session_scope() as db:
        rows = audit.entries(db, actor=actor, before=int_arg("before"), limit=audit.PAGE + 1)
    more = len(rows) > audit.PAGE
    rows = rows[: audit.PAGE]
    return render_template(
        "editor/audit.html", rows=rows, actor=actor, next_before=rows[-1].id if more and rows else None
    )


@bp.after_request
def record_change(response):
    """Every change an editor makes (a POST by a logged-in editor) goes in the audit log."""
    if request.method == "POST" and current_user.is_authenticated and request.endpoint not in NOT_CHANGES:
        with session_scope() as db:
            audit.record(
                db,
                actor=f"editor:{current_user.email}",
                action=f"POST {request.url_rule.rule if request.url_rule else request.path}",
                target=request.path,
                status=response.status_code,
            )
    return response
