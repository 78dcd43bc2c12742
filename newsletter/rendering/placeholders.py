"""Per-recipient markers left in the frozen render of an issue.

A frozen render is compiled once per variant; its markers are then replaced
for each recipient by ``personalise`` (one pass over a pre-split string,
never a re-render). A marker is ``%%GTS_<nonce>_<SLOT>%%`` where the nonce
is 128 random bits made when the render is compiled and stored with it
(``IssueRender.nonce``): no article, feed, file or editor's text can know
it, so none can put a marker — and with it a reader's personal link — where
the template did not.

The template's markers are counted as it prints them (``Printed``), and the
compiled render must hold exactly those, no more and no fewer
(``verify``); a render that does not is refused, so it is never stored or
sent. Text that merely looks like a marker is refused earlier, at approval
(``content.markers``, ``rendering.lint.content_findings``).
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from functools import lru_cache

from markupsafe import Markup

from newsletter.content.markers import PREFIX, SLOTS

GREETING, UNSUBSCRIBE_URL, PREFERENCES_URL = SLOTS
_NONCE = re.compile(r"[0-9a-f]{32}")


class MarkerError(ValueError):
    """A render whose markers are not exactly the ones its template printed."""


def new_nonce() -> str:
    return secrets.token_hex(16)


def marker(nonce: str, slot: str) -> str:
    return f"{PREFIX}{nonce}_{slot}%%"


@lru_cache(maxsize=256)
def pattern(nonce: str) -> re.Pattern:
    """The markers of one render, capturing the slot name (for ``re.split``)."""
    if not _NONCE.fullmatch(nonce or ""):
        raise MarkerError("this render has no marker nonce (frozen by an older version): freeze it again")
    return re.compile(re.escape(f"{PREFIX}{nonce}_") + "(" + "|".join(SLOTS) + ")" + re.escape("%%"))


class Printed:
    """The markers as a template prints them (``p.greeting`` …), counting
    each one printed, so the compiled output can be checked against it."""

    def __init__(self, nonce: str, *, html: bool):
        self.nonce = nonce
        self.counts: Counter[str] = Counter()
        self._wrap = Markup if html else str

    def _print(self, slot: str) -> str:
        self.counts[slot] += 1
        return self._wrap(marker(self.nonce, slot))

    @property
    def greeting(self) -> str:
        return self._print(GREETING)

    @property
    def unsubscribe_url(self) -> str:
        return self._print(UNSUBSCRIBE_URL)

    @property
    def preferences_url(self) -> str:
        return self._print(PREFERENCES_URL)


def found(nonce: str, source: str) -> Counter[str]:
    """The markers of ``nonce`` in ``source``, by slot."""
    return Counter(m.group(1) for m in pattern(nonce).finditer(source))


def verify(nonce: str, source: str, printed: Counter[str], part: str) -> None:
    """Raise MarkerError unless ``source`` holds exactly the ``printed`` markers
    and nothing else that starts like one."""
    seen = found(nonce, source)
    if seen != +printed:
        raise MarkerError(
            f"the {part} holds markers {dict(seen)} but its template printed {dict(+printed)}: refused"
        )
    if source.count(PREFIX) != sum(seen.values()) or source.count(nonce) != sum(seen.values()):
        raise MarkerError(f"the {part} holds text that reads as a marker: refused")
