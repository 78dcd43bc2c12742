"""Per-recipient substitution into a frozen render: no re-rendering, ever.

The frozen HTML and text are split once at their placeholders (cached per
render); each message is one list copy, three slot assignments and a join.
Link tokens are byte-for-byte those of ``tokens.make_token`` (same
itsdangerous signer, salt and key derivation) but the derived key's HMAC
state is kept and copied per token, which saves the key derivation that
dominates ``make_token``'s cost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from html import escape

from newsletter import tokens
from newsletter.config import Settings
from newsletter.models import IssueRender
from newsletter.rendering import placeholders

_SPLIT = re.compile(placeholders.PATTERN)
_SLOT = {placeholders.GREETING: 0, placeholders.UNSUBSCRIBE_URL: 1, placeholders.PREFERENCES_URL: 2}


@dataclass(frozen=True, slots=True)
class Personalised:
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    preferences_url: str


class _Split:
    __slots__ = ("parts", "slots")

    def __init__(self, source: str):
        self.parts = _SPLIT.split(source)
        self.slots = tuple((i, _SLOT[self.parts[i]]) for i in range(1, len(self.parts), 2))

    def fill(self, values: tuple[str, str, str]) -> str:
        parts = self.parts.copy()
        for index, slot in self.slots:
            parts[index] = values[slot]
        return "".join(parts)


class _TokenMaker:
    """``tokens.make_token(secret, purpose, value)`` without re-deriving the key each time."""

    __slots__ = ("_mac", "_sep")

    def __init__(self, secret: str, purpose: str):
        signer = tokens._signer(secret, purpose)  # the one definition of salt, digest and derivation
        self._mac = hmac.new(signer.derive_key(), digestmod=hashlib.sha256)
        self._sep = signer.sep.decode("ascii") if isinstance(signer.sep, bytes) else signer.sep

    def __call__(self, value) -> str:
        text = str(value)
        mac = self._mac.copy()
        mac.update(text.encode("utf-8"))
        return text + self._sep + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


_splits: dict[str, _Split] = {}
_makers: dict[tuple[str, str], _TokenMaker] = {}
_MAX_SPLITS = 256


def _split(source: str) -> _Split:
    # str caches its hash, so looking up the same frozen string again is O(1).
    found = _splits.get(source)
    if found is None:
        if len(_splits) >= _MAX_SPLITS:
            _splits.clear()
        found = _splits[source] = _Split(source)
    return found


def token_maker(secret: str, purpose: str) -> _TokenMaker:
    key = (secret, purpose)
    maker = _makers.get(key)
    if maker is None:
        maker = _makers[key] = _TokenMaker(secret, purpose)
    return maker


def greeting(name: str) -> str:
    name = " ".join((name or "").split())
    return f"Hi {name}," if name else "Hello,"


def personalise(render: IssueRender, settings: Settings, *, subscriber_id, email: str = "", name: str = "") -> Personalised:
    """The message for one reader: placeholders replaced in the frozen strings."""
    base = settings.base_url
    unsubscribe_url = f"{base}/unsubscribe/{token_maker(settings.secret_key, 'unsubscribe')(subscriber_id)}"
    preferences_url = f"{base}/preferences/{token_maker(settings.secret_key, 'preferences')(subscriber_id)}"
    hello = greeting(name)
    return Personalised(
        subject=render.subject,
        html=_split(render.html).fill((escape(hello), unsubscribe_url, preferences_url)),
        text=_split(render.text).fill((hello, unsubscribe_url, preferences_url)),
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
    )


def generic(render: IssueRender, settings: Settings) -> str:
    """The HTML with personal links replaced by generic ones (web archive)."""
    home = f"{settings.base_url}/"
    return _split(render.html).fill(("Hello,", home, home))
