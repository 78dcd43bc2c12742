"""Flask extensions, created unbound and initialised by the app factory, and
the running app's Settings, which the factory binds beside them."""

from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from newsletter.config import Settings

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
login_manager = LoginManager()

SETTINGS_KEY = "signal_settings"


def settings() -> Settings:
    """The Settings of the running app: the one accessor for views, forms and CLI commands."""
    return current_app.extensions[SETTINGS_KEY]
