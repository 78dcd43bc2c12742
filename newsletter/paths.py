"""Where the folders beside the package are: ``templates/`` (web pages and
email), ``migrations/`` (Alembic) and the static files. The one place that
computes them, for the web app, the email renderer and ``db upgrade``."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
TEMPLATES = ROOT / "templates"
MIGRATIONS = ROOT / "migrations"
STATIC = PACKAGE / "static"
