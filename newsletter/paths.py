"""Where the folders that ship with the package are: ``templates/`` (web
pages and email), ``migrations/`` (Alembic) and the static files. The one
place that computes them, for the web app, the email renderer and ``db
upgrade``.

In a source checkout (and an editable install) ``templates/`` and
``migrations/`` sit beside the package, at the top of the repository, as
DESIGN.md lays them out. A wheel or sdist carries them inside the package
(``newsletter/templates``, ``newsletter/migrations``: pyproject.toml maps
them there), so an installed package works from any folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    inside = PACKAGE / name  # an installed wheel
    return inside if inside.is_dir() else PACKAGE.parent / name  # a source checkout


TEMPLATES = _shipped("templates")
MIGRATIONS = _shipped("migrations")
STATIC = PACKAGE / "static"
