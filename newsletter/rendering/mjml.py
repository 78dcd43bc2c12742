"""MJML → HTML with mjml-python (the Rust MRML engine), loading nothing from elsewhere.

The one place the project compiles MJML: issues (``rendering.compiled``)
and one-off mails (``delivery.transactional``) both call ``compile_mjml``.

Web fonts: by default MRML adds a Google Fonts ``<link>`` and ``@import``
whenever a family it knows (Ubuntu, Roboto, Lato, Open Sans, Droid Sans)
appears in a font-family — and MJML's own default for text is "Ubuntu".
An email must load nothing from elsewhere, so we pass an empty font table
(``fonts={}``: no family is known, nothing is imported) and every template
sets ``SYSTEM_FONTS`` in ``<mj-attributes>``. The only way left to import a
font is ``<mj-font href=…>`` in a template, which ``compile_mjml`` refuses.
Content cannot spell that tag: values are escaped by Jinja and HTML is
sanitised by nh3 before it reaches a template.

Escaping: MRML writes attribute values and text as they are in the source
(it does not decode ``&quot;`` or ``&lt;`` and write them back raw), so the
escaping Jinja does is the escaping the email gets; tests/test_rendering.py
holds it to that with hostile values. Two things MRML does do to HTML inside
``<mj-text>``: it parses it strictly (an unclosed tag or a bare ``<`` is an
error — nh3's output never has either), and it drops whitespace it takes for
indentation, which ``keep_spaces`` guards against.
"""

from __future__ import annotations

import re

try:
    from mjml import mjml2html
except ImportError as exc:
    # mjml-python and the older pure-Python "mjml" package both install the
    # module "mjml"; uninstalling "mjml" after mjml-python deletes files they share.
    raise ImportError(
        "mjml-python is missing or damaged: pip uninstall -y mjml && pip install --force-reinstall mjml-python"
    ) from exc

SYSTEM_FONTS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"
NO_WEB_FONTS: dict[str, str] = {}
_MJ_FONT = re.compile(r"<mj-font\b", re.IGNORECASE)
_LINE_BREAK_ONLY = re.compile(r">(\n\s*)<")


class MjmlError(ValueError):
    """MJML that does not compile (MRML's parse error), or that would load a web font."""


def compile_mjml(source: str) -> str:
    """Compile MJML source to HTML; raise MjmlError if MRML cannot parse it
    (it is strict: an unclosed tag or a bare ``<`` in text is an error) or
    if it asks for a web font."""
    if _MJ_FONT.search(source):
        raise MjmlError(
            "<mj-font> imports a web font; emails use SYSTEM_FONTS and load nothing from elsewhere"
        )
    try:
        return mjml2html(source, disable_comments=True, fonts=NO_WEB_FONTS)
    except ValueError as exc:  # MRML reports every parse error as ValueError
        raise MjmlError(str(exc)) from exc


def keep_spaces(fragment: str) -> str:
    """HTML (sanitised, for inside ``<mj-text>``) with its inter-tag spaces kept through MRML.

    MRML drops a text node that is only whitespace and starts with a line
    break, taking it for the template's indentation; so a Markdown soft break
    between two inline elements, ``<strong>New:</strong>\\n<em>paper</em>``,
    would read "New:paper". A space before the line break keeps the node and
    renders the same. (Between block elements the extra space shows nothing.)
    """
    return _LINE_BREAK_ONLY.sub(r"> \1<", fragment)
