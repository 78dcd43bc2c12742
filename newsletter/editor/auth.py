"""Flask-Login wiring and access rules for the editors' workspace.

Every ``/editor`` route requires a logged-in editor (the blueprint's
``require_login`` guard in ``editor.views``); only ``PUBLIC_ENDPOINTS`` are
open. Views for admins are wrapped in ``admin_required``, which also records
them in ``ADMIN_ENDPOINTS`` so a test can walk them all.

A session is only as good as the editor's ``session_version`` it carries
(``service.session_id``): logging out or changing the password ends every
copy of the cookie. ``session_expired`` ends a session idle for
``NEWSLETTER_EDITOR_IDLE_MINUTES`` or older than
``NEWSLETTER_EDITOR_SESSION_HOURS``.
"""

from __future__ import annotations

from datetime import timedelta
from functools import wraps

from flask import abort, session
from flask_login import UserMixin, current_user

from newsletter import clock
from newsletter.editor import service
from newsletter.extensions import login_manager, settings
from newsletter.models import Editor

PUBLIC_ENDPOINTS = {"editor.login"}
ADMIN_ENDPOINTS: set[str] = set()


class EditorUser(UserMixin):
    """The logged-in editor, detached from any database session."""

    def __init__(self, editor: Editor):
        self.id = editor.id
        self.email = editor.email
        self.role = editor.role
        self.session_id = service.session_id(editor)

    def get_id(self) -> str:
        return self.session_id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@login_manager.user_loader
def load_editor(user_id: str) -> EditorUser | None:
    """The session's editor, unless the session was ended (its version is old)."""
    editor = service.editor_for_session(user_id)
    return EditorUser(editor) if editor else None


_SEEN = "editor_seen"
_SINCE = "editor_since"


def start_session() -> None:
    """Called right after ``login_user``: the session's clocks start now."""
    now = int(clock.now().timestamp())
    session[_SINCE] = session[_SEEN] = now


def session_expired() -> bool:
    """True when the session sat idle too long or is too old (then the caller
    logs out); otherwise records this request as activity."""
    now = int(clock.now().timestamp())
    current = settings()
    seen, since = session.get(_SEEN), session.get(_SINCE)
    if not isinstance(seen, int) or not isinstance(since, int):
        return True
    if now - seen > timedelta(minutes=current.editor_idle_minutes).total_seconds():
        return True
    if now - since > timedelta(hours=current.editor_session_hours).total_seconds():
        return True
    session[_SEEN] = now
    return False


login_manager.login_view = "editor.login"
login_manager.login_message = "Please log in to open the editor."
login_manager.login_message_category = "warning"
# A session cookie replayed from another browser (different IP/agent) is dropped.
login_manager.session_protection = "strong"


def admin_required(view):
    """403 for editors who are not admins (login is already enforced)."""
    ADMIN_ENDPOINTS.add(f"editor.{view.__name__}")

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not getattr(current_user, "is_admin", False):
            abort(403, description="This page is for admins only.")
        return view(*args, **kwargs)

    return wrapper
