"""The sign-up box for other sites: ``/embed`` (an iframe) and ``/embed.js``.

``/embed`` is a tiny page holding the box. Who may frame it is said by
``frame-ancestors`` (NEWSLETTER_EMBED_ORIGINS, else the CORS list, and our
own pages); a page loaded by a site that is not listed explains the refusal
instead, and may be framed by anyone because it holds no form.

``/embed.js`` asks ``/embed/box`` (CORS, the same list) for the box's HTML —
the same template as the iframe's — puts it into the placeholder, and sends
it to the JSON API; it adds no inline script or style, so a host page with
a strict CSP only has to allow this origin in script-src, style-src and
connect-src. In the iframe, the same script sends the form the same way;
without scripts, the form posts here and the page shows the result.

No cookie is involved anywhere (third-party cookies are blocked in cross-site
frames): each rendering carries a signed, time-limited form token bound to
the site that showed it (``form_tokens``), and the POST must come from our
page or an allowed site (``Origin``/``Referer``).
"""

from __future__ import annotations

import secrets

from flask import Response, jsonify, render_template, request, send_from_directory
from markupsafe import Markup

from newsletter import tokens
from newsletter.db import session_scope
from newsletter.extensions import csrf, settings
from newsletter.paths import STATIC
from newsletter.readers import box, origins, service
from newsletter.readers.limits import subscribe_limits
from newsletter.readers.views import bp

ASSET_MAX_AGE = 3600


def _topic_tags():
    with session_scope() as session:
        return service.topic_tags(session, settings())


def _frame_csp(ancestors: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )


def render_box(options: box.BoxOptions, token: str, tags, result: dict | None = None, email: str = ""):
    """The box's HTML: one template for the iframe's page and the script's
    placeholder (the template escapes everything it prints)."""
    return Markup(
        render_template(
            "readers/_box.html",
            options=options,
            token=token,
            tags=tags,
            uid=secrets.token_hex(4),
            consent_text=service.CONSENT_TEXT,
            result=result,
            email=email,
            shows_topics=box.shows_topics(options, tags),
        )
    )


def _frame(options, token, tags, result=None, email="", status=200) -> Response:
    allowed = " ".join(["'self'", *settings().allowed_embed_origins])
    html = render_template(
        "readers/embed.html", box_html=render_box(options, token, tags, result, email), options=options
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _frame_csp(allowed)
    response.headers["Cache-Control"] = "no-store"  # every rendering has its own token
    response.frame_allowed = True  # frame-ancestors says who; no X-Frame-Options
    return response


def _refused(origin: str | None) -> Response:
    html = render_template("readers/embed_refused.html", message=origins.refusal(origin))
    response = Response(html, status=403, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _frame_csp("*")  # no form here: anyone may show the refusal
    response.frame_allowed = True
    return response


@bp.get("/embed")
def embed():
    """The box in a page of its own, for an iframe on an allowed site."""
    host = origins.origin_of(request.headers.get("Referer"))
    if host and not origins.box_allowed(settings(), host):
        return _refused(host)
    tags = _topic_tags()
    options = box.parse_options(request.args, [t.slug for t in tags])
    if host in origins.own_origins(settings()):  # our own pages say which page they are
        options = box.with_page(options, origins.path_of(request.headers.get("Referer")))
    token = box.make_token(settings(), host, options.page, box.shows_topics(options, tags))
    return _frame(options, token, tags)


@bp.post("/embed")
@csrf.exempt  # a cross-site frame has no session cookie: the form token and Origin check protect it
@subscribe_limits
def embed_post():
    """The iframe's form when scripts are off: the same box, with the result in it."""
    sender = origins.caller()
    if not origins.box_allowed(settings(), sender):
        return _refused(sender)
    signup = box.BoxSignup.from_mapping(request.form, request.form.getlist("topics"))
    try:
        box.subscribe_from_box(settings(), signup, request.remote_addr)
    except tokens.TokenExpired:
        return _answer("error", box.MESSAGES["expired"], 400)
    except tokens.TokenError:
        return _answer("error", box.MESSAGES["invalid"], 400)
    except service.InvalidInput as exc:
        return _answer("error", str(exc), 400)
    return _answer("success", box.MESSAGES["accepted"], 200)


def _answer(kind: str, text: str, status: int) -> Response:
    """The posted box again, with ``text`` in its live region and a fresh token."""
    tags = _topic_tags()
    options = box.parse_options(box.posted_options(request.form), [t.slug for t in tags])
    token = box.renew_token(settings(), request.form.get("form_token"))  # for the next try
    email = str(request.form.get("email", ""))[:320] if kind == "error" else ""
    return _frame(options, token, tags, {"kind": kind, "text": text}, email, status)


def rate_limited() -> Response:
    """Over the subscribe limits (Flask-Limiter's 429) while posting the box: say so
    in the box, since the app's error page may not be shown in another site's frame."""
    return _answer("error", box.MESSAGES["slow"], 429)


@bp.get("/embed/box")
def embed_box():
    """The box's HTML for ``/embed.js`` on an allowed site (CORS). A site
    that is not allowed gets a refusal it can read and show."""
    origin = request.headers.get("Origin") or next(iter(origins.own_origins(settings())), None)
    if not origins.box_allowed(settings(), origin):
        response = jsonify(error="origin not allowed", message=origins.refusal(origin))
        response.status_code = 403
        response.headers["Access-Control-Allow-Origin"] = "*"  # the refusal only, so the page can say why
        return response
    tags = _topic_tags()
    options = box.parse_options(request.args, [t.slug for t in tags])
    token = box.make_token(settings(), origin, options.page, box.shows_topics(options, tags))
    response = jsonify(html=render_box(options, token, tags))
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _asset(name: str, mimetype: str) -> Response:
    response = send_from_directory(STATIC, name, mimetype=mimetype, max_age=ASSET_MAX_AGE)
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"  # loaded by other sites' pages
    response.headers["Access-Control-Allow-Origin"] = "*"  # public, no credentials
    return response


@bp.get("/embed.js")
def embed_js():
    return _asset("embed.js", "text/javascript")


@bp.get("/embed.css")
def embed_css():
    return _asset("embed.css", "text/css")
