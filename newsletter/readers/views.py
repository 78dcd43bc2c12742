"""Reader-facing pages. Thin: every decision lives in newsletter.readers.service.

Public answers never reveal whether an address is known: subscribing and
asking for a new link always end on the same "check your inbox" page.

Links in mail are fetched by machines (link scanners, previews), so a GET
never changes anything: the confirmation and unsubscribe links show a page
with one button, and the POST acts. The unsubscribe link is the weakest
credential (it travels in headers and is forwarded), so its pages show no
address and no preferences link; they offer to mail that link instead.
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError

from newsletter import tokens
from newsletter.db import session_scope
from newsletter.extensions import csrf, settings
from newsletter.models import Subscriber
from newsletter.readers import form_tokens, links, origins, service
from newsletter.readers.forms import ActionForm, EraseForm, NewLinkForm, PreferencesForm, SubscribeForm
from newsletter.readers.limits import per_client_limit, subscribe_limits
from newsletter.scheduling.slots import wall_time as slot_time
from newsletter.suppression import suppression_reason
from newsletter.web import public_cache

bp = Blueprint("readers", __name__)


def _tags():
    with session_scope() as session:
        return service.topic_tags(session, settings())


SUBSCRIBE_FORM = "subscribe"
PAGE_MAX_AGE, PAGE_STALE = 300, 3600  # within form_tokens' lifetime: a cached form still works


def _index_page(form: SubscribeForm, status: int = 200):
    # The cookie-less token (the same for every visitor this hour): the page can be cached.
    form.csrf_token.data = form_tokens.issue(settings().secret_key, SUBSCRIBE_FORM)
    body = render_template("readers/index.html", form=form, consent_text=service.CONSENT_TEXT)
    return make_response(body, status)


@bp.get("/")
def index():
    """The sign-up page: the same for every visitor, so it is cached (``public_cache``).
    It changes with the topics offered and the hourly form token."""
    tags = _tags()
    token = form_tokens.issue(settings().secret_key, SUBSCRIBE_FORM)

    def render() -> str:
        form = SubscribeForm()
        form.set_topics(tags, "")
        return _index_page(form).get_data(as_text=True)

    key = ("front", token, [(t.slug, t.name) for t in tags])
    return public_cache(key, render, max_age=PAGE_MAX_AGE, stale=PAGE_STALE)


@bp.get("/subscribe")
def subscribe_get():
    return redirect(url_for(".index"))


def check_public_form(purpose: str) -> None:
    """A public form's cookie-less CSRF check (``form_tokens``): refused as
    Flask-WTF refuses, so the visitor sees the same "Form expired" page."""
    try:
        form_tokens.check(
            settings().secret_key,
            purpose,
            request.form.get("csrf_token"),
            request.headers,
            origins.own_origins(settings()),
        )
    except form_tokens.FormTokenError as exc:
        raise CSRFError(str(exc)) from None


@bp.post("/subscribe")
@csrf.exempt  # checked by check_public_form: the form's page is cached, so it has no session
@subscribe_limits
def subscribe():
    check_public_form(SUBSCRIBE_FORM)
    form = SubscribeForm()
    form.set_topics(_tags())
    if form.website.data:  # honeypot: pretend all went well, do nothing
        return redirect(url_for(".check_inbox"))
    if not form.validate_on_submit():
        return _index_page(form, 400)
    try:
        service.subscribe(
            settings(),
            email=form.email.data,
            name=form.name.data,
            topics=form.topics.data,
            timezone=form.timezone.data,
            source="form",
            consent_text=service.CONSENT_TEXT,
            ip=request.remote_addr,
        )
    except service.InvalidInput as exc:
        getattr(form, exc.field, form.email).errors.append(str(exc))
        return _index_page(form, 400)
    return redirect(url_for(".check_inbox"))


@bp.get("/subscribe/check-your-inbox")
def check_inbox():
    return render_template(
        "readers/check_inbox.html", form=NewLinkForm(), max_age_days=settings().token_max_age_days
    )


# --- confirmation ----------------------------------------------------------------


def _link_problem(kind: str, status: int, token: str = "", purpose: str = "confirm"):
    """The page for a link that does not work: what happened, and a form for a new one."""
    form = NewLinkForm(formdata=None)
    form.token.data = token
    page = render_template(
        "readers/link_problem.html",
        kind=kind,
        purpose=purpose,
        form=form,
        max_age_days=settings().token_max_age_days,
    )
    return page, status


def _confirm_token(token: str):
    """(subscriber id, issued at, request id), or the page that explains the problem."""
    try:
        return links.read_confirm_token(settings(), token), None
    except tokens.TokenExpired:
        return None, _link_problem("expired", 410, token)
    except tokens.TokenError:
        return None, _link_problem("invalid", 400)


@bp.get("/confirm/<token>")
def confirm(token: str):
    """A page with one button; nothing is confirmed by opening the link."""
    read, problem = _confirm_token(token)
    if problem:
        return problem
    subscriber_id, _, request_id = read
    asked = service.requested(settings(), subscriber_id, request_id)
    if asked is None:
        return render_template("readers/gone.html"), 404
    return render_template("readers/confirm.html", form=ActionForm(), asked=asked)


@bp.post("/confirm/<token>")
def confirm_post(token: str):
    read, problem = _confirm_token(token)
    if problem:
        return problem
    if not ActionForm().validate_on_submit():
        abort(400)
    subscriber_id, issued, request_id = read
    outcome = service.confirm(settings(), subscriber_id, issued, request_id)
    if outcome.result == "stale":
        return _link_problem("stale", 410)
    if outcome.result == "missing":
        return render_template("readers/gone.html"), 404
    return render_template(
        "readers/confirmed.html",
        outcome=outcome,
        preferences_token=links.preferences_token(settings(), outcome.subscriber_id),
    )


@bp.post("/confirm/new")
@subscribe_limits
def new_link():
    form = NewLinkForm()
    if not form.validate_on_submit():
        abort(400)
    subscriber_id = None
    if form.token.data:
        try:
            subscriber_id = links.read_confirm_token(settings(), form.token.data)[0]
        except tokens.TokenExpired as exc:
            subscriber_id = links.expired_confirm_subscriber(exc.payload)
        except tokens.TokenError:
            subscriber_id = None
    if subscriber_id is not None:
        service.resend_confirmation(settings(), subscriber_id=subscriber_id)
    elif form.email.data:
        service.send_new_link(settings(), form.email.data)  # preferences link if active, else a confirmation
    else:
        return _link_problem("invalid", 400)
    return redirect(url_for(".check_inbox"))


# --- preferences -------------------------------------------------------------------


def _subscriber_id(purpose: str, token: str) -> int:
    """The reader a preferences or unsubscribe link is for; a link that does not
    work ends on a page that offers a new one by address (never a bare "Bad request")."""
    try:
        return links.read_subscriber_token(settings(), purpose, token)
    except tokens.TokenError as exc:
        kind = "expired" if isinstance(exc, tokens.TokenExpired) else "invalid"
        body, status = _link_problem(kind, 410 if kind == "expired" else 400, purpose=purpose)
        abort(Response(body, status=status, mimetype="text/html"))


def _load(subscriber_id: int):
    """(snapshot of the reader, suppression reason) or (None, None)."""
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return None, None
        return sub, suppression_reason(session, sub.email)


def _preferences_page(token: str, sub, blocked, form=None, erase_form=None, status=200):
    tags = _tags()
    if form is None:  # not this form's request (e.g. a failed erase): show what is saved, untouched
        form = PreferencesForm(formdata=None)
        form.name.data = sub.name
    form.set_topics(tags, sub.topics)
    form.set_zones(settings().timezone, sub.timezone)
    return (
        render_template(
            "readers/preferences.html",
            sub=sub,
            blocked=blocked,
            token=token,
            form=form,
            erase_form=erase_form or EraseForm(),
            action_form=ActionForm(),
            unsubscribe_token=links.unsubscribe_token(settings(), sub.id),
            local_time=settings().local_time_delivery,
            slot_time=slot_time(settings()),
        ),
        status,
    )


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    sub, blocked = _load(_subscriber_id("preferences", token))
    if sub is None:
        return render_template("readers/gone.html"), 404
    form = PreferencesForm()
    if request.method == "POST":
        form.set_topics(_tags())
        form.set_zones(settings().timezone)
        if form.validate_on_submit():
            try:
                service.update_preferences(
                    settings(),
                    sub.id,
                    name=form.name.data,
                    topics=form.topics.data,
                    timezone=form.timezone.data,
                )
            except service.InvalidInput as exc:
                getattr(form, exc.field, form.name).errors.append(str(exc))
            else:
                flash("Your preferences are saved.", "success")
                return redirect(url_for(".preferences", token=token))
        return _preferences_page(token, sub, blocked, form=form, status=400)
    return _preferences_page(token, sub, blocked)


@bp.post("/preferences/<token>/export")
def export(token: str):
    subscriber_id = _subscriber_id("preferences", token)
    if not ActionForm().validate_on_submit():
        abort(400)
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return render_template("readers/gone.html"), 404
        data = service.export_data(session, sub)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="get-the-signal-my-data.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/preferences/<token>/erase")
def erase(token: str):
    subscriber_id = _subscriber_id("preferences", token)
    form = EraseForm()
    sub, blocked = _load(subscriber_id)
    if sub is None:
        return render_template("readers/gone.html"), 404
    if not form.validate_on_submit():
        return _preferences_page(token, sub, blocked, erase_form=form, status=400)
    with session_scope() as session:
        row = session.get(Subscriber, subscriber_id)
        if row is not None:
            service.erase(session, row)
    return render_template("readers/erased.html")


@bp.post("/preferences/<token>/resubscribe")
def resubscribe(token: str):
    subscriber_id = _subscriber_id("preferences", token)
    if not ActionForm().validate_on_submit():
        abort(400)
    result = service.resubscribe(settings(), subscriber_id)
    if result == "missing":
        return render_template("readers/gone.html"), 404
    if result == "active":
        flash("Welcome back! You are subscribed again.", "success")
    elif result == "suppressed":
        flash("We cannot send to this address any more, so we could not subscribe it again.", "error")
    return redirect(url_for(".preferences", token=token))


# --- unsubscribe ------------------------------------------------------------------


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058 one-click POSTs carry no cookie and no CSRF token; the signed token is the proof
def unsubscribe(token: str):
    """GET shows a page with one button; POST (the button, or a mail client's
    RFC 8058 one-click) unsubscribes. Neither shows the address."""
    subscriber_id = _subscriber_id("unsubscribe", token)
    one_click = request.method == "POST" and request.form.get("List-Unsubscribe") == "One-Click"
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return render_template("readers/gone.html"), (200 if request.method == "POST" else 404)
        changed = False
        if request.method == "POST":
            changed = service.unsubscribe(session, sub, "one-click" if one_click else "page")
        status = sub.status
    context = dict(status=status, changed=changed, action_form=ActionForm(), token=token)
    if request.method == "GET" and status in ("active", "pending"):
        return render_template("readers/unsubscribe.html", **context)
    return render_template("readers/unsubscribed.html", **context)


@bp.post("/unsubscribe/<token>/preferences-link")
@per_client_limit
def preferences_link(token: str):
    """Mail the reader their preferences link (never shown on these pages)."""
    subscriber_id = _subscriber_id("unsubscribe", token)
    if not ActionForm().validate_on_submit():
        abort(400)
    service.send_preferences_link(settings(), subscriber_id)
    return render_template("readers/check_inbox.html", sent="preferences")
