"""What stored text must never spell: a per-recipient marker, in any encoding.

A frozen issue carries markers where each reader's greeting and personal
links go (``rendering.placeholders``: ``%%GTS_<nonce>_UNSUBSCRIBE_URL%%``,
with a random nonce per render, so no stored text can produce a real one).
Text that *looks like* a marker is still an attack on the newsletter's
readers, whatever its encoding, so the editor's lint shows it and approval
is refused while an issue holds it (``issues.service``).

``marker_like`` decodes a value every way a stage between the source and the
reader's mail client could decode it — Unicode compatibility forms (full-width
``％``), invisible format characters, HTML character references (``&#37;``,
``&percnt;``), percent-encoding (``%25``, nested), Markdown backslash escapes
and tags — until nothing changes, then looks for the marker prefix or a
slot name with every separator removed.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

PREFIX = "%%GTS_"
SLOTS = ("GREETING", "UNSUBSCRIBE_URL", "PREFERENCES_URL")

_MAX_ROUNDS = 8
_TAG = re.compile(r"<[^>]*>")
_SEPARATORS = re.compile(r"[^a-z0-9%]+")
_LOOKS_LIKE = re.compile(
    "%%gts|gts(?:" + "|".join(slot.lower().replace("_", "") for slot in SLOTS) + ")",
)


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in {"Cf", "Cc", "Mn"}


def _decode_once(value: str) -> str:
    value = unicodedata.normalize("NFKC", value)
    value = "".join(c for c in value if not _invisible(c))
    value = html.unescape(value)
    value = unquote(value.replace("+", " "))
    value = value.replace("\\", "")
    return _TAG.sub("", value)


def decoded(value: str) -> str:
    """``value`` decoded until a round changes nothing (bounded)."""
    for _ in range(_MAX_ROUNDS):
        step = _decode_once(value)
        if step == value:
            break
        value = step
    return value


def marker_like(value: str | None) -> bool:
    """True when ``value``, decoded every way, spells the marker prefix or a slot name."""
    if not value:
        return False
    return bool(_LOOKS_LIKE.search(_SEPARATORS.sub("", decoded(value).lower())))
