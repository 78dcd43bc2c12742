"""The application factory: settings, database, extensions, blueprints, commands.

The top of the import graph: it imports the faces (views, API, CLI
commands), which import the domain services, which import the foundation;
nothing imports this module but the entry points (``wsgi.py``,
``newsletter.__main__``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter import BRAND, TAGLINE, db
from newsletter.api import articles as api_articles  # noqa: F401 - adds its routes to api_views.bp
from newsletter.api import issues as api_issues  # noqa: F401 - adds its routes to api_views.bp
from newsletter.api import problems
from newsletter.api import readers as api_readers  # noqa: F401 - adds its routes to api_views.bp
from newsletter.api import stats as api_stats  # noqa: F401 - adds its routes to api_views.bp
from newsletter.api import subscribers as api_subscribers  # noqa: F401 - adds its routes to api_views.bp
from newsletter.api import views as api_views
from newsletter.cli import register_commands
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.delivery.transports import check_dsn
from newsletter.editor import service as editor_service
from newsletter.editor import views as editor_views
from newsletter.editor import (  # noqa: F401 - each adds its routes to editor_views.bp
    views_api,
    views_articles,
    views_embed,
    views_issues,
    views_mail,
    views_outbox,
    views_subscribers,
    views_webhooks,
)
from newsletter.extensions import SETTINGS_KEY, csrf, limiter, login_manager
from newsletter.feedback import views as feedback_views
from newsletter.issues import states
from newsletter.paths import STATIC, TEMPLATES
from newsletter.readers import archive, embed, outbox  # noqa: F401 - each adds its routes to readers_views.bp
from newsletter.readers import views as readers_views
from newsletter.web import PUBLIC_PAGES, DatabaseInteger, PublicPages

MAX_BODY_BYTES = 2 * 1024 * 1024  # forms and JSON; CSV imports stream through the CLI
CSRF_TIME_LIMIT = 4 * 3600  # a form's CSRF token expires after this, in every environment

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; frame-src 'self'; frame-ancestors 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def check_settings(settings: Settings) -> Settings:
    """What only the capabilities can check (the foundation's ``load_settings``
    checked the rest): the transport DSN by its provider's own rules."""
    try:
        check_dsn(settings.transport)
    except ValueError as exc:
        raise ConfigError(f"NEWSLETTER_TRANSPORT: {exc}") from None
    return settings


def create_app(app_settings: Settings | None = None) -> Flask:
    app_settings = check_settings(app_settings or load_settings())
    app = Flask(
        __name__,
        template_folder=str(TEMPLATES),
        static_folder=str(STATIC),
        instance_path=str(Path(app_settings.instance_path).resolve()),
    )
    app.extensions[SETTINGS_KEY] = app_settings
    app.extensions[PUBLIC_PAGES] = PublicPages()  # the public pages, rendered once per ETag
    app.url_map.converters["int"] = DatabaseInteger  # before any route: absurd numbers are a 404
    if app_settings.trusted_proxies:
        # X-Forwarded-For/-Proto are believed from exactly this many proxies, counted from
        # the right; without the setting they are ignored (a client can write them).
        n = app_settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)
    app.config.update(
        SECRET_KEY=app_settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app_settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_SECURE=app_settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=CSRF_TIME_LIMIT,
        RATELIMIT_STORAGE_URI=app_settings.rate_limit_storage,
        RATELIMIT_ENABLED=True,
        TESTING=app_settings.env == "testing",
    )
    db.init_engine(app_settings.database_url)
    editor_service.use_settings(app_settings)

    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)

    app.jinja_env.globals.update(brand=BRAND, tagline=TAGLINE, states=states)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    _register_blueprints(app)
    _register_pages(app)
    register_commands(app)
    logging.getLogger("newsletter").setLevel(logging.INFO)
    return app


def _register_blueprints(app: Flask) -> None:
    app.register_blueprint(readers_views.bp)
    app.register_blueprint(editor_views.bp, url_prefix="/editor")
    app.register_blueprint(api_views.bp, url_prefix="/api/v1")
    app.register_blueprint(feedback_views.bp)
    # The JSON API and provider webhooks authenticate by token or signature, not cookies.
    csrf.exempt(api_views.bp)
    csrf.exempt(feedback_views.bp)


def _register_pages(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        try:
            with db.get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"status": "error", "database": str(exc.__class__.__name__)}, 503
        return {"status": "ok", "database": "ok"}

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not getattr(response, "frame_allowed", False):  # the sign-up box says who may frame it
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response

    @app.errorhandler(CSRFError)
    def csrf_refused(error):
        """A form without its token, or with one that expired (CSRF_TIME_LIMIT): say what to do."""
        message = (
            "This form was open too long, or came from another page or browser session. "
            f"Go back, reload the page and send it again. ({error.description})"
        )
        if request.path.startswith("/api/"):
            return problems.problem_response(400, error.description, kind="csrf")
        if request.is_json:
            return {"error": "bad request", "message": error.description}, 400
        return render_template("error.html", code=400, title="Form expired", message=message), 400

    @app.errorhandler(HTTPException)
    def api_http_error(error):
        """Any other HTTP error (401, 409, 415 …): a problem under /api/, else werkzeug's own page."""
        if request.path.startswith("/api/"):
            return problems.from_http_exception(error)
        return error

    for code, title, message in (
        (400, "Bad request", "The request could not be understood."),
        (403, "Forbidden", "You are not allowed to do that."),
        (404, "Not found", "There is nothing at this address."),
        (405, "Method not allowed", "This page does not accept that kind of request."),
        (413, "Too large", "What you sent is larger than we accept."),
        (429, "Slow down", "Too many requests. Please wait a moment and try again."),
        (500, "Something went wrong", "An error occurred on our side. It has been logged."),
    ):
        _error_page(app, code, title, message)


def _error_page(app: Flask, code: int, title: str, message: str) -> None:
    def handler(error):
        if code == 429 and request.endpoint == "readers.embed_post":  # inside another site's frame
            return embed.rate_limited()
        detail = getattr(error, "description", None) if code in (400, 403) else None
        allow = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            allow = {"Allow": ", ".join(sorted(error.valid_methods))}
        if request.path.startswith("/api/"):
            if isinstance(error, HTTPException):
                return problems.from_http_exception(error, detail or message, error=title.lower())
            return problems.problem_response(code, detail or message, error=title.lower())
        if request.path.startswith("/webhooks/") or request.is_json:
            return {"error": title.lower(), "message": detail or message}, code, allow
        return render_template("error.html", code=code, title=title, message=detail or message), code, allow

    app.register_error_handler(code, handler)
