"""Per-recipient substitution into a frozen render: no re-rendering, ever.

The frozen HTML and text are split once at their markers (cached per
render): only the markers of the render's own nonce are split at, so text
that merely resembles a marker is left as it is. A message costs a list
copy and three slot assignments a body; a body is joined into a string
only when it is read (the SMTP path sends the pre-encoded ``Bodies``).
Link tokens come from ``tokens.token_maker`` (HMAC states kept per secret
and purpose).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from newsletter import mail_encoding, tokens
from newsletter.config import Settings
from newsletter.models import IssueRender
from newsletter.rendering import placeholders

_SLOT = {placeholders.GREETING: 0, placeholders.UNSUBSCRIBE_URL: 1, placeholders.PREFERENCES_URL: 2}


class Bodies:
    """One reader's text and HTML transfer-encoded for MIME, on demand, from
    the frozen render's pre-encoded parts (``mail_encoding`` templates): the
    SMTP path asks for them, the HTTP APIs never do."""

    __slots__ = ("_text", "_text_values", "_html", "_html_values")

    def __init__(self, text: _Split, text_values: list[str], html: _Split, html_values: list[str]):
        self._text, self._text_values = text, text_values
        self._html, self._html_values = html, html_values

    def text_qp(self) -> bytes:
        return self._text.quoted_printable().encode(self._text_values)

    def html_base64(self) -> bytes:
        return self._html.base64().encode(self._html_values)

    def text(self) -> str:
        return self._text.fill(self._text_values)

    def html(self) -> str:
        return self._html.fill(self._html_values)


class JoinedOnRead:
    """A dataclass field for a message body (``Personalised``,
    ``delivery.message.OutgoingMessage``): a string, or a function that
    makes it (``Bodies.text``, ``Bodies.html``), called on the first read
    and its string kept. The SMTP path sends the pre-encoded parts and never
    reads the strings, so a batch in hand does not hold a joined copy of
    every reader's HTML (17 KB a message; docs/performance.md, "The ninth
    session")."""

    _REQUIRED = object()

    def __init__(self, default=_REQUIRED):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_{name}_body"

    def __get__(self, instance, owner=None):
        if instance is None:  # the dataclass asking for the default
            if self.default is self._REQUIRED:
                raise AttributeError(self.slot)
            return self.default
        value = instance.__dict__[self.slot]
        if callable(value):
            value = instance.__dict__[self.slot] = value()
        return value

    def __set__(self, instance, value: str | Callable[[], str] | None) -> None:
        instance.__dict__[self.slot] = value


@dataclass
class Personalised:
    """One reader's message. ``html`` and ``text`` are joined from the
    frozen render's parts when first read (``JoinedOnRead``)."""

    subject: str
    html: str = JoinedOnRead()
    text: str = JoinedOnRead()
    unsubscribe_url: str = ""
    preferences_url: str = ""
    bodies: Bodies | None = None


class _Split:
    """A frozen string cut at its markers (values at the odd indexes)."""

    __slots__ = ("parts", "slots", "_qp", "_b64")

    def __init__(self, nonce: str, source: str):
        self.parts = placeholders.pattern(nonce).split(source)
        self.slots = tuple(_SLOT[self.parts[i]] for i in range(1, len(self.parts), 2))
        self._qp = self._b64 = None

    def values(self, by_slot: tuple[str, str, str]) -> list[str]:
        return [by_slot[slot] for slot in self.slots]

    def fill(self, values: list[str]) -> str:
        parts = self.parts.copy()
        parts[1::2] = values
        return "".join(parts)

    def quoted_printable(self) -> mail_encoding.QuotedPrintableTemplate:
        if self._qp is None:
            self._qp = mail_encoding.QuotedPrintableTemplate(self.parts)
        return self._qp

    def base64(self) -> mail_encoding.Base64Template:
        if self._b64 is None:
            self._b64 = mail_encoding.Base64Template(self.parts)
        return self._b64


_splits: dict[tuple[str, str], _Split] = {}
_MAX_SPLITS = 256


def _split(nonce: str, source: str) -> _Split:
    # str caches its hash, so looking up the same frozen string again is O(1).
    key = (nonce, source)
    found = _splits.get(key)
    if found is None:
        if len(_splits) >= _MAX_SPLITS:
            _splits.clear()
        found = _splits[key] = _Split(nonce, source)
    return found


def greeting(name: str) -> str:
    if not name:
        return "Hello,"
    name = " ".join(name.split())
    return f"Hi {name}," if name else "Hello,"


class _Links:
    """The two per-reader URLs for one (secret, base URL)."""

    __slots__ = ("unsubscribe", "preferences", "unsubscribe_prefix", "preferences_prefix")

    def __init__(self, secret: str, base_url: str):
        self.unsubscribe = tokens.token_maker(secret, "unsubscribe")
        self.preferences = tokens.token_maker(secret, "preferences")
        self.unsubscribe_prefix = f"{base_url}/unsubscribe/"
        self.preferences_prefix = f"{base_url}/preferences/"


_links: dict[tuple[str, str], _Links] = {}


def _links_for(settings: Settings) -> _Links:
    key = (settings.secret_key, settings.base_url)
    links = _links.get(key)
    if links is None:
        links = _links[key] = _Links(*key)
    return links


def personalise(
    render: IssueRender, settings: Settings, *, subscriber_id, email: str = "", name: str = ""
) -> Personalised:
    """The message for one reader: markers replaced in the frozen strings.
    Raises ``placeholders.MarkerError`` for a render without a nonce."""
    links = _links_for(settings)
    unsubscribe_url = links.unsubscribe_prefix + links.unsubscribe(subscriber_id)
    preferences_url = links.preferences_prefix + links.preferences(subscriber_id)
    hello = greeting(name)
    html, text = _split(render.nonce, render.html), _split(render.nonce, render.text)
    html_values = html.values((escape(hello), unsubscribe_url, preferences_url))
    text_values = text.values((hello, unsubscribe_url, preferences_url))
    bodies = Bodies(text, text_values, html, html_values)
    return Personalised(
        render.subject,
        html=bodies.html,
        text=bodies.text,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        bodies=bodies,
    )


def prepare(render: IssueRender, settings: Settings) -> None:
    """Do now, once, what the first ``personalise`` of ``render`` would do:
    split its HTML and text and pre-encode their static parts. A process
    that prepares before it forks its senders shares the result with them."""
    _links_for(settings)
    _split(render.nonce, render.html).base64()
    _split(render.nonce, render.text).quoted_printable()
