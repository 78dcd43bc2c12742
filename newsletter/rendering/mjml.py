"""MJML → HTML with mjml-python, with MJML's default Google Fonts kept out.

mjml-python adds a Google Fonts ``<link>`` whenever a font family it knows
(Ubuntu, Roboto, …) appears; MJML's own default for text is "Ubuntu", so
every template sets a system font stack in ``<mj-attributes>``. As a second
line of defence any font import that slips through is removed here.
"""

from __future__ import annotations

import re

from mjml import mjml_to_html

SYSTEM_FONTS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"

_FONT_IMPORTS = re.compile(
    r"<!--\[if !mso\]><!-->\s*(<link[^>]+fonts\.googleapis[^>]*>\s*)+(<style[^>]*>\s*(@import url\([^)]*\);\s*)+</style>\s*)?<!--<!\[endif\]-->",
    re.S,
)
_ANY_FONT_LINK = re.compile(
    r"<link[^>]+fonts\.googleapis[^>]*>|@import url\(https://fonts\.googleapis[^)]*\);"
)


class MjmlError(ValueError):
    pass


def compile_mjml(source: str) -> str:
    """Compile MJML source to HTML; raise MjmlError on MJML validation errors."""
    result = mjml_to_html(source, keep_comments=False)
    if result.errors:
        raise MjmlError("; ".join(str(e) for e in result.errors))
    html = _FONT_IMPORTS.sub("", result.html)
    return _ANY_FONT_LINK.sub("", html)
