"""What the web faces share beyond Flask's own idioms: email HTML served
under its own Content-Security-Policy.

Email HTML needs inline styles, and nothing in it may run script, submit a
form or load from anywhere but https and data: images. It is shown in
sandboxed iframes (the editor's preview, both outbox pages): same-origin so
the editor can fit the frame to its content, popups for links, and a click
may navigate the top window (the demo's outbox opens a confirmation link).
"""

from __future__ import annotations

import re

from flask import Response

MAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "frame-ancestors 'self'; form-action 'none'"
)
_HEAD = re.compile(r"(<head[^>]*>)", re.I)
_BLANK = re.compile(r"""target=(["'])_blank\1""", re.I)


def mail_html_response(html: str, *, links_in_top_window: bool = False) -> Response:
    """``html`` for a sandboxed iframe; with ``links_in_top_window`` its links
    open in the page around the frame instead of a new tab."""
    if links_in_top_window:
        html = _HEAD.sub(r'\1<base target="_top">', html, count=1)
        html = _BLANK.sub('target="_top"', html)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
