"""An issue variant's HTML and text: Jinja with the real values, then MJML.

A variant is compiled the plain way — the view's values go through Jinja's
autoescaping into the MJML template, and mjml-python compiles the result
(about a millisecond for a 30-article issue, figures in docs/performance.md).
That is cheap enough that nothing is pre-compiled or cached: what a template
says is what every variant gets.

Why this is safe with hostile values: Jinja escapes every plain value
(``"`` → ``&#34;``, ``<`` → ``&lt;``) and Markdown arrives as nh3-sanitised
HTML, and MRML writes attribute values and text back exactly as it read
them, so the escaping is done once, by Jinja (tests/test_rendering.py checks
titles, alt texts and URLs full of quotes, tags and entities).

Per-recipient values are never rendered here: the template prints the
markers of ``rendering.placeholders`` (given as ``p``, a ``Printed`` that
counts them), which MRML passes through untouched and ``personalise`` fills
per message; the caller checks the output holds exactly what was printed.
"""

from __future__ import annotations

import re

from newsletter.rendering.environment import email_env
from newsletter.rendering.mjml import SYSTEM_FONTS, compile_mjml
from newsletter.rendering.placeholders import Printed
from newsletter.rendering.view import IssueView

TEMPLATE = "email/issue.mjml.j2"
TEXT_TEMPLATE = "email/issue.txt.j2"


def render_mjml(view: IssueView, markers: Printed) -> str:
    """The variant's MJML source (Jinja with the real, escaped values)."""
    context = {"issue": view, "sections": view.sections, "p": markers, "fonts": SYSTEM_FONTS}
    return email_env().get_template(TEMPLATE).render(context)


def render_html(view: IssueView, markers: Printed) -> str:
    """The variant's HTML: its MJML compiled by mjml-python."""
    return compile_mjml(render_mjml(view, markers))


def render_text(view: IssueView, markers: Printed) -> str:
    """The variant's text part (no MJML: a plain-text Jinja template)."""
    context = {"issue": view, "sections": view.sections, "p": markers}
    text = email_env().get_template(TEXT_TEMPLATE).render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
