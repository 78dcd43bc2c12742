"""Webhook and click-redirect views: thin faces over ``feedback.webhooks``
and ``feedback.clicks``."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, request

from newsletter import db
from newsletter.extensions import limiter, settings
from newsletter.feedback import clicks, webhooks
from newsletter.tokens import TokenError

bp = Blueprint("feedback", __name__)


@bp.post("/webhooks/<provider>")
@limiter.exempt
def webhook(provider: str):
    """``POST /webhooks/<provider>``: postmark, sendgrid, mailgun, ses, resend."""
    app_settings = settings()
    limit = app_settings.webhook_max_bytes
    if request.content_length is not None and request.content_length > limit:
        return {"error": "too large", "message": "webhook body too large"}, 413
    body = request.stream.read(limit + 1)
    fetch = current_app.extensions.get("feedback_fetch")
    cache = current_app.extensions.setdefault("feedback_sns_certs", {})
    result = webhooks.handle(app_settings, provider, body, request.headers, fetch=fetch, cache=cache)
    headers = (
        {"WWW-Authenticate": 'Basic realm="webhooks"'}
        if result.status == 401 and provider == "postmark"
        else {}
    )
    return result.body, result.status, headers


@bp.get("/c/<int:issue_id>/<signature>")
def click(issue_id: int, signature: str):
    """Counting redirect of an article link; refuses anything not signed by us."""
    app_settings = settings()
    try:
        url = clicks.verify_click(app_settings, issue_id, signature, request.args.get("u", ""))
    except TokenError:
        abort(404)
    if clicks.enabled(app_settings):
        with db.session_scope() as session:
            clicks.count_click(session, issue_id, url)
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
