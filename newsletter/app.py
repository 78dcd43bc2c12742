"""The application factory: settings, database, extensions, blueprints."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app, render_template
from sqlalchemy import text

from newsletter import BRAND, TAGLINE, db
from newsletter.config import Settings, load_settings
from newsletter.extensions import csrf, limiter, login_manager

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 2 * 1024 * 1024  # forms and JSON; CSV imports stream through the CLI

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; frame-src 'self'; frame-ancestors 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def settings() -> Settings:
    """The Settings of the running app (views and services called from views)."""
    return current_app.extensions["signal_settings"]


def create_app(app_settings: Settings | None = None) -> Flask:
    app_settings = app_settings or load_settings()
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(Path(__file__).parent / "static"),
        instance_path=str(Path(app_settings.instance_path).resolve()),
    )
    app.extensions["signal_settings"] = app_settings
    app.config.update(
        SECRET_KEY=app_settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app_settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_SECURE=app_settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None if app_settings.env != "production" else 8 * 3600,
        RATELIMIT_STORAGE_URI=app_settings.rate_limit_storage,
        RATELIMIT_ENABLED=True,
        TESTING=app_settings.env == "testing",
    )
    db.init_engine(app_settings.database_url)

    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)

    app.jinja_env.globals.update(brand=BRAND, tagline=TAGLINE)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    _register_blueprints(app)
    _register_pages(app)
    from newsletter.cli import register_commands

    register_commands(app)
    logging.getLogger("newsletter").setLevel(logging.INFO)
    return app


def _register_blueprints(app: Flask) -> None:
    from newsletter.api import bp as api_bp
    from newsletter.editor import bp as editor_bp
    from newsletter.feedback import bp as feedback_bp
    from newsletter.readers import bp as readers_bp

    app.register_blueprint(readers_bp)
    app.register_blueprint(editor_bp, url_prefix="/editor")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(feedback_bp)
    # The JSON API and provider webhooks authenticate by token or signature, not cookies.
    csrf.exempt(api_bp)
    csrf.exempt(feedback_bp)


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
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response

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
        from flask import request

        detail = getattr(error, "description", None) if code in (400, 403) else None
        if request.path.startswith("/api/") or request.path.startswith("/webhooks/") or request.is_json:
            return {"error": title.lower(), "message": detail or message}, code
        return render_template("error.html", code=code, title=title, message=detail or message), code

    app.register_error_handler(code, handler)
