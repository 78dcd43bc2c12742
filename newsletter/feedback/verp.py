"""VERP return paths: one envelope sender per delivery.

The envelope sender of each issue email is ``Settings.bounce_return_path``
with ``{token}`` replaced by a signed token of the delivery id, e.g.
``bounces+42.Xb3…@example.org``. A bounce comes back to that address, so it
names exactly one delivery, and nobody can forge a bounce for someone else's
delivery without the secret key.
"""

from __future__ import annotations

import re

from newsletter.config import Settings
from newsletter.tokens import TokenError, make_token, read_token

PLACEHOLDER = "{token}"
_TOKEN_CHARS = r"[A-Za-z0-9._-]+"


def verp_enabled(settings: Settings) -> bool:
    template = settings.bounce_return_path
    return bool(template) and PLACEHOLDER in template and "@" in template


def verp_address(settings: Settings, delivery_id: int) -> str:
    """The envelope sender for one delivery ("" when VERP is not configured:
    the transport then uses the From address)."""
    if not verp_enabled(settings):
        return ""
    return settings.bounce_return_path.replace(
        PLACEHOLDER, make_token(settings.secret_key, "bounce", delivery_id)
    )


def _pattern(settings: Settings) -> re.Pattern:
    prefix, suffix = settings.bounce_return_path.split(PLACEHOLDER, 1)
    return re.compile(re.escape(prefix) + f"({_TOKEN_CHARS})" + re.escape(suffix), re.IGNORECASE)


def delivery_ids_in(settings: Settings, text: str) -> list[int]:
    """Delivery ids named by genuine VERP addresses found in ``text`` (in order,
    without repeats). Forged or altered tokens are ignored."""
    if not verp_enabled(settings) or not text:
        return []
    found: list[int] = []
    for match in _pattern(settings).finditer(text):
        token = match.group(1)
        try:
            value = read_token(settings.secret_key, "bounce", token)
        except TokenError:
            continue
        if value.isdigit() and int(value) not in found:
            found.append(int(value))
    return found
