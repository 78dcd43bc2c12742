"""``/outbox``: where the mail kept by the ``outbox://`` transport is read —
behind an editor's (admin's) login, in every configuration.

The outbox holds readers' mail with their personal links in it, so it is
never public, not even in development (a development server is often
reachable from the network: ``serve --host 0.0.0.0``, a container, a
proxy on the same machine). These addresses lead to the editor's outbox
(``editor.views_outbox``), which asks for the login ``newsletter demo``
prints; they are kept so the demo's first steps and old bookmarks work.
"""

from __future__ import annotations

from flask import redirect, url_for

from newsletter.readers.views import bp


@bp.get("/outbox")
def outbox():
    return redirect(url_for("editor.outbox"))


@bp.get("/outbox/<int:message_id>")
def outbox_message(message_id: int):
    return redirect(url_for("editor.outbox_message", message_id=message_id))


@bp.get("/outbox/<int:message_id>/html")
def outbox_html(message_id: int):
    return redirect(url_for("editor.outbox_html", message_id=message_id))
