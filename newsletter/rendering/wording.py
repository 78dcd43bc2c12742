"""The words about an issue that depend on which articles a reader gets.

A reader of one section must not be told "20 stories this week, on AI Agents,
AI Ethics, Data…" nor see an inbox line naming articles they never receive.
So the intro and the preheader may hold placeholders, filled per variant
from the articles that variant shows, in the order they are shown, every
time a variant is rendered (preview, freeze, archive): a reorder or a
removed article is reflected at once, and a frozen variant keeps what it
said.

    {count}    the number of articles the reader gets        ("3")
    {stories}  "story" or "stories", agreeing with {count}
    {topics}   the reader's sections in issue order           ("Agents, Data and Tools")
    {inside}   "Inside: <first title>; <second title> and N more"

Assembly writes ``DEFAULT_INTRO`` and ``DEFAULT_PREHEADER``; an editor may
write their own words around the same placeholders. Any other text in
braces is left as it is.
"""

from __future__ import annotations

import re

DEFAULT_INTRO = "{count} {stories} this week, on {topics}."
DEFAULT_PREHEADER = "{inside}"
PLACEHOLDERS = ("count", "stories", "topics", "inside")
PREHEADER_MAX = 150

_PATTERN = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def inside_line(titles: list[str]) -> str:
    """ "Inside: A; B and 3 more" (at most ``PREHEADER_MAX`` characters)."""
    if not titles:
        return ""
    shown = titles[:2]
    rest = len(titles) - len(shown)
    text = "Inside: " + "; ".join(shown) + (f" and {rest} more" if rest else "")
    return text if len(text) <= PREHEADER_MAX else text[: PREHEADER_MAX - 1].rstrip() + "…"


def topic_list(names: list[str]) -> str:
    """ "Agents", "Agents and Data", "Agents, Data and Tools"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def values(section_names: list[str], titles: list[str]) -> dict[str, str]:
    """The placeholders' values for a variant showing ``titles`` under ``section_names``."""
    count = len(titles)
    return {
        "count": str(count),
        "stories": "story" if count == 1 else "stories",
        "topics": topic_list(section_names),
        "inside": inside_line(titles),
    }


def fill(text: str, filled: dict[str, str]) -> str:
    """``text`` with its placeholders replaced (unknown braces kept)."""
    return _PATTERN.sub(lambda m: filled[m.group(1)], text or "")
