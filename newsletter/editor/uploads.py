"""Files an editor uploaded to import, kept between the preview and the
import itself (browsers do not send a file twice).

Each is stored under ``<instance>/imports/`` by an unguessable name; the
name travels in the preview's form and is checked against a strict pattern
before it touches the file system. An upload is removed once imported, and
any left behind (a preview never confirmed) after an hour.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path
from typing import IO

KEEP_SECONDS = 3600
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def _folder(instance_path: str) -> Path:
    folder = Path(instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _clean(folder: Path) -> None:
    expired = time.time() - KEEP_SECONDS
    for path in folder.glob("*.upload"):
        try:
            if path.stat().st_mtime < expired:
                path.unlink()
        except FileNotFoundError:  # another worker cleaned it first
            pass


def keep(instance_path: str, stream: IO[bytes]) -> str:
    """Store an upload; returns its token."""
    folder = _folder(instance_path)
    _clean(folder)
    token = secrets.token_urlsafe(24)
    with (folder / f"{token}.upload").open("xb") as out:
        shutil.copyfileobj(stream, out, 1024 * 1024)
    return token


def path_of(instance_path: str, token: str) -> Path | None:
    """The stored upload for ``token``, or None (unknown, expired, malformed)."""
    if not _TOKEN.fullmatch(token or ""):
        return None
    path = _folder(instance_path) / f"{token}.upload"
    return path if path.is_file() else None


def discard(instance_path: str, token: str) -> None:
    path = path_of(instance_path, token)
    if path is not None:
        path.unlink(missing_ok=True)
