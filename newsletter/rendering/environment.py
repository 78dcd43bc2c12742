"""The Jinja environment for email templates, issues and transactional mail
alike (usable without a Flask app: the scheduler, the CLI and the sender
threads render too)."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter import BRAND, TAGLINE
from newsletter.paths import TEMPLATES
from newsletter.rendering.mjml import SYSTEM_FONTS


@lru_cache(maxsize=1)
def email_env() -> Environment:
    """MJML and HTML templates are autoescaped; ``*.txt.j2`` (text parts) are not.

    Compiled templates are kept in Jinja's bytecode cache (the user's private
    temporary folder, keyed by each template's source): a process that
    renders — `issue send` freezing an issue, above all — starts without
    compiling them again (about 10 ms a template)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        bytecode_cache=FileSystemBytecodeCache(),
        autoescape=select_autoescape(enabled_extensions=("html", "mjml.j2", "xml"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
        auto_reload=True,
    )
    env.globals.update(brand=BRAND, tagline=TAGLINE, system_fonts=SYSTEM_FONTS)
    return env
