"""MJML compiled once per process, filled per variant.

mjml-python needs ~100 ms for a 30-article issue, far over the 20 ms a
variant may cost. An MJML section compiles to a self-contained block of
HTML (mjml-python does not merge Outlook conditionals across sections), so
the template is rendered once with *sentinel* values, compiled once, and cut
at ``mark()`` points into fragments: head+header+intro, section start,
card, card with image, section end, footer. A variant is then a string assembly: each
fragment is pre-split at its sentinels and filled with escaped values.

This is also *more* correct than compiling real values: mjml-python decodes
entities in attributes (``href``, ``alt``, the title it copies into
``aria-label``) and writes them back raw, so a ``"`` in a title would break
the markup; here every value is escaped by us, exactly once.

``render_full`` keeps the straightforward path (Jinja with real values →
MJML) for tests, which check that both give the same HTML for plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from markupsafe import Markup, escape

from newsletter.rendering import placeholders
from newsletter.rendering.environment import email_env
from newsletter.rendering.mjml import SYSTEM_FONTS, compile_mjml
from newsletter.rendering.view import CardView, IssueView

TEMPLATE = "email/issue.mjml.j2"
TEXT_TEMPLATE = "email/issue.txt.j2"
ISSUE_FIELDS = ("title", "preheader", "label", "theme", "intro_html", "web_url", "postal_address")
CARD_FIELDS = ("title", "url", "synopsis_html", "meta", "image_url", "image_alt")
MARKS = ("section", "card", "card_image", "section_end", "footer")
_MARK = re.compile(r"@@GTSMARK:(\w+)@@")
_SENTINEL = re.compile(r"@@GTS:(\w+\.\w+)@@")
# mjml-python joins the Outlook conditionals of adjacent sections; fragments
# compiled apart must be joined the same way once assembled.
_MSO_JOIN = re.compile(r"\n?<!\[endif\]-->\s*?<!--\[if mso \| IE\]>")
_INDENT = re.compile(r"\n\s+")


def _compact(html: str) -> str:
    """Drop MJML's indentation (a third of the bytes; Gmail clips at 102 KB).
    Applied to compiled template output only, never to filled-in content."""
    return _INDENT.sub("\n", html)


def _s(name: str) -> Markup:
    return Markup(f"@@GTS:{name}@@")


def personal_placeholders(html: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        greeting=Markup(placeholders.GREETING) if html else placeholders.GREETING,
        unsubscribe_url=Markup(placeholders.UNSUBSCRIBE_URL) if html else placeholders.UNSUBSCRIBE_URL,
        preferences_url=Markup(placeholders.PREFERENCES_URL) if html else placeholders.PREFERENCES_URL,
    )


def _context(issue, sections, mark) -> dict:
    return {
        "issue": issue,
        "sections": sections,
        "p": personal_placeholders(),
        "fonts": SYSTEM_FONTS,
        "mark": mark,
    }


def _no_mark(_name: str) -> str:
    return ""


def _raw_mark(name: str) -> Markup:
    return Markup(f"<mj-raw>@@GTSMARK:{name}@@</mj-raw>")


class _Fragment:
    """A piece of compiled HTML pre-split at its sentinels: literal, field, literal, …"""

    __slots__ = ("parts", "fields")

    def __init__(self, html: str):
        pieces = _SENTINEL.split(html)
        self.parts = pieces
        self.fields = [(i, pieces[i]) for i in range(1, len(pieces), 2)]

    def fill(self, values: dict[str, str]) -> str:
        parts = list(self.parts)
        for index, name in self.fields:
            parts[index] = values[name]
        return "".join(parts)


@dataclass
class Skeleton:
    head: _Fragment
    section: _Fragment
    card: _Fragment
    card_image: _Fragment
    section_end: _Fragment
    footer: _Fragment


_cache: dict[tuple, Skeleton] = {}


def _template_key() -> tuple:
    env = email_env()
    source_path = Path(env.loader.searchpath[0]) / TEMPLATE
    return (str(source_path), source_path.stat().st_mtime_ns)


def skeleton() -> Skeleton:
    """Compile the template once (per process and template version) into fragments."""
    key = _template_key()
    cached = _cache.get(key)
    if cached is not None:
        return cached
    issue = SimpleNamespace(**{f: _s(f"issue.{f}") for f in ISSUE_FIELDS})

    def card(image: bool) -> SimpleNamespace:
        values = {f: _s(f"card.{f}") for f in CARD_FIELDS}
        return SimpleNamespace(**values, has_image=image)

    section = SimpleNamespace(
        name=_s("section.name"), slug=_s("section.slug"), articles=[card(False), card(True)]
    )
    source = email_env().get_template(TEMPLATE).render(_context(issue, [section], _raw_mark))
    pieces = _MARK.split(_compact(compile_mjml(source)))
    found = tuple(pieces[1::2])
    if found != MARKS:
        raise RuntimeError(f"{TEMPLATE}: expected marks {MARKS}, found {found}")
    built = Skeleton(*(_Fragment(h) for h in pieces[0::2]))
    _cache.clear()
    _cache[key] = built
    return built


def _e(value) -> str:
    """Escape exactly as Jinja's autoescape does (Markup passes through)."""
    return str(escape(value))


def _card_values(card: CardView) -> dict[str, str]:
    return {
        "card.title": _e(card.title),
        "card.url": _e(card.url),
        "card.synopsis_html": _e(card.synopsis_html),
        "card.meta": _e(card.meta),
        "card.image_url": _e(card.image_url),
        "card.image_alt": _e(card.image_alt),
    }


def render_html(view: IssueView) -> str:
    """The variant's HTML from the pre-compiled fragments (no MJML at this point)."""
    sk = skeleton()
    issue_values = {f"issue.{f}": _e(getattr(view, f)) for f in ISSUE_FIELDS}
    out = [sk.head.fill(issue_values)]
    for section in view.sections:
        out.append(sk.section.fill({"section.name": _e(section.name), "section.slug": _e(section.slug)}))
        for card in section.articles:
            fragment = sk.card_image if card.has_image else sk.card
            out.append(fragment.fill(_card_values(card)))
        out.append(sk.section_end.fill({}))
    out.append(sk.footer.fill(issue_values))
    return _MSO_JOIN.sub("", "".join(out))


def render_full(view: IssueView) -> str:
    """The reference path: Jinja with real values, then MJML (slow; tests and bench)."""
    source = email_env().get_template(TEMPLATE).render(_context(view, view.sections, _no_mark))
    return _compact(compile_mjml(source))


def render_text(view: IssueView) -> str:
    context = {"issue": view, "sections": view.sections, "p": personal_placeholders(html=False)}
    text = email_env().get_template(TEXT_TEMPLATE).render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
