"""Flask-Login wiring for editor accounts."""

from __future__ import annotations

from flask_login import UserMixin

from newsletter.db import session_scope
from newsletter.extensions import login_manager
from newsletter.models import Editor


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
        return EditorUser(editor) if editor else None


login_manager.login_view = "editor.login"
login_manager.login_message = "Please log in to open the editor."
