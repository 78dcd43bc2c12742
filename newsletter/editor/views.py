"""The editors' blueprint: login, logout, dashboard, and the admin pages for
editors and settings.

Views are thin: they read forms, call ``editor.service`` / ``dashboard`` and
render. Issues, articles, subscribers and the outbox are pages of this same
blueprint (one ``/editor`` workspace behind one login guard), written in
their own modules (``views_issues`` …), each adding its routes to ``bp``;
the app factory imports them all.
"""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from newsletter.db import session_scope
from newsletter.doctor.checks import run_checks
from newsletter.doctor.report import summary
from newsletter.editor import dashboard as dash
from newsletter.editor import service
from newsletter.editor.auth import (
    PUBLIC_ENDPOINTS,
    EditorUser,
    admin_required,
    session_expired,
    start_session,
)
from newsletter.editor.chart import line_chart
from newsletter.editor.forms import ActionForm, EditorForm, LoginForm
from newsletter.extensions import limiter, login_manager, settings
from newsletter.models import Editor
from newsletter.settings_help import MEANING

bp = Blueprint("editor", __name__)
SECRET_FIELDS = {
    "secret_key",
    "api_tokens",
    "webhook_secrets",
    "transport",
    "bounce_mailbox",
    "database_url",
    "broker_url",
    "redis_url",
}


@bp.before_request
def require_login():
    """Refuse anonymous visitors everywhere in /editor except the login page
    (one guard on the blueprint, so a new view cannot forget it)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if current_user.is_authenticated and session_expired():
        logout_user()
        session.clear()
        flash("Your session ended after a while without activity: please log in again.", "warning")
    if not current_user.is_authenticated:
        if request.path.endswith(".json"):
            abort(401)
        return login_manager.unauthorized()
    return None


@bp.after_request
def no_store(response):
    """Editor pages hold subscriber data: keep them out of shared caches."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_filter("editor_time")
def editor_time(value, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    """A datetime shown in the newsletter's time zone, with the zone's name."""
    if value is None:
        return "—"
    local = value.astimezone(settings().tz)
    return f"{local.strftime(fmt)} {local.tzname()}"


@bp.context_processor
def workspace_context() -> dict:
    return {"newsletter_tz": settings().timezone}


def _safe_next(target: str | None) -> str:
    """Only follow ``next`` to a path inside the workspace (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/editor") and "\\" not in target:
            return target
    return url_for("editor.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("editor.dashboard"))
    form = LoginForm()
    error = None
    retry_after = None
    if form.validate_on_submit():
        result = service.authenticate(form.email.data, form.password.data, client=request.remote_addr or "")
        if result.ok:
            with session_scope() as db:
                user = EditorUser(db.get(Editor, result.editor_id))
            session.clear()  # a new session id on login: no fixation
            login_user(user)
            start_session()
            return redirect(_safe_next(request.args.get("next")))
        error, retry_after = result.message, result.retry_after
    elif request.method == "POST":
        error = "Enter your email address and password."
    status = 429 if retry_after else 401 if error else 200
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return render_template("editor/login.html", form=form, error=error), status, headers


@bp.post("/logout")
def logout():
    ActionForm()  # CSRF is checked for every POST by CSRFProtect
    service.end_sessions(current_user.id)  # every copy of this session's cookie stops working
    logout_user()
    session.clear()
    flash("You are logged out.", "success")
    return redirect(url_for("editor.login"))


@bp.get("/")
def home():
    return redirect(url_for("editor.dashboard"))


@bp.get("/dashboard")
def dashboard():
    with session_scope() as db:
        data = dash.build_dashboard(db, settings(), show_addresses=current_user.is_admin)
    chart = line_chart(data.growth, title="Readers over the last 12 weeks")
    return render_template("editor/dashboard.html", d=data, chart=chart, settings=settings())


@bp.route("/editors", methods=["GET", "POST"])
@admin_required
def editors():
    form = EditorForm()
    if form.validate_on_submit():
        try:
            with session_scope() as db:
                created = service.create_editor(db, form.email.data, form.password.data, form.role.data)
                flash(f"Created {created.role} {created.email}.", "success")
            return redirect(url_for("editor.editors"))
        except service.EditorError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
    with session_scope() as db:
        accounts = service.list_editors(db)
    return render_template("editor/editors.html", form=form, accounts=accounts, action=ActionForm())


@bp.post("/editors/<int:editor_id>/delete")
@admin_required
def delete_editor(editor_id: int):
    try:
        with session_scope() as db:
            service.delete_editor(db, editor_id, acting_id=current_user.id)
        flash("Editor deleted.", "success")
    except service.EditorError as exc:
        flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("editor.editors"))


@bp.get("/settings")
@admin_required
def settings_page():
    return _settings_page(findings=None)


@bp.get("/settings/doctor")
@admin_required
def settings_doctor():
    """The pre-flight report (``newsletter doctor``'s), run on request: it asks
    DNS and the mail server, so it is not run on every visit."""
    findings = run_checks(settings())
    return _settings_page(findings=findings, counts=summary(findings))


def _settings_page(**context):
    current = settings()
    rows = []
    for f in fields(current):
        value = getattr(current, f.name)
        if f.name in SECRET_FIELDS and value:
            shown = _mask(f.name, value)
        else:
            shown = ", ".join(value) if isinstance(value, tuple) else str(value)
        rows.append((f"NEWSLETTER_{f.name.upper()}", shown, MEANING.get(f.name, "")))
    return render_template("editor/settings.html", rows=rows, **context)


def _mask(name: str, value) -> str:
    """Show which kind of secret is set without showing it."""
    if name in {"transport", "database_url", "bounce_mailbox", "broker_url", "redis_url"}:
        parts = urlsplit(str(value))
        host = parts.hostname or ""
        return f"{parts.scheme}://…{('@' + host) if host else ''} (credentials hidden)"
    if isinstance(value, tuple | dict):
        return f"{len(value)} set (hidden)"
    return "set (hidden)"
