"""Flask-Login wiring and access rules for the editors' workspace.

Every ``/editor`` route requires a logged-in editor (the blueprint's
``require_login`` guard in ``editor.views``); only ``PUBLIC_ENDPOINTS`` are
open. Views for admins are wrapped in ``admin_required``, which also records
them in ``ADMIN_ENDPOINTS`` so a test can walk them all.
"""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import UserMixin, current_user

from newsletter.db import session_scope
from newsletter.extensions import login_manager
from newsletter.models import Editor

PUBLIC_ENDPOINTS = {"editor.login"}
ADMIN_ENDPOINTS: set[str] = set()


class EditorUser(UserMixin):
    """The logged-in editor, detached from any database session."""

    def __init__(self, editor: Editor):
        self.id = editor.id
        self.email = editor.email
        self.role = editor.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@login_manager.user_loader
def load_editor(user_id: str) -> EditorUser | None:
    if not user_id.isdigit():
        return None
    with session_scope() as session:
        editor = session.get(Editor, int(user_id))
        # A disabled account's sessions end with it (`newsletter editor disable`).
        return EditorUser(editor) if editor and editor.disabled_at is None else None


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
