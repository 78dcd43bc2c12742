"""Editor accounts: creation, password hashing and authentication with lockout.

Passwords are hashed with Argon2id (argon2-cffi), a memory-hard scheme, so a
stolen table is expensive to brute-force: at the library's default cost,
except under the test suite (``NEWSLETTER_ENV=testing``), which hashes at
Argon2's minimal cost (``password_hasher``, the one place the cost is
chosen; the app factory applies it with ``use_settings``). Wrong passwords are counted per
account; after ``MAX_FAILED_LOGINS`` the account is locked for
``LOCKOUT_MINUTES`` (read from ``newsletter.clock`` so tests can move time).
The per-IP request rate limit lives on the login view (Flask-Limiter); this
module is the per-account half of the defence and is shared by the CLI.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, func, select

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import EDITOR_ROLES, Editor

MAX_FAILED_LOGINS = 5
LOCKOUT_MINUTES = 15
MIN_PASSWORD_LENGTH = 10

# Argon2's least cost (8 KiB, one pass, one lane): still Argon2id, still
# verified, but a hash takes microseconds instead of a fifth of a second.
TESTING_COST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@functools.cache
def password_hasher(env: str) -> PasswordHasher:
    """The hasher for a ``Settings.env``: the library's default cost (Argon2id,
    RFC 9106 low-memory profile: 64 MiB, t=3, p=4) in production and
    development, the minimal cost under tests. Any of them verifies a hash made
    by another (the cost is read from the hash); a login under the default
    cost rehashes a cheap hash."""
    if env == "testing":
        return PasswordHasher(**TESTING_COST)
    return PasswordHasher()


_hasher = password_hasher("production")


def use_settings(settings: Settings) -> None:
    """Hash at the cost ``settings.env`` calls for, process-wide (the app
    factory calls this, as it sets the process-wide engine)."""
    global _hasher
    _hasher = password_hasher(settings.env)


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the address is unknown, so both paths cost the same.
    Made on first use, not at import: every CLI process (a sender too) imports
    this module, and one Argon2 hash costs 64 MiB of memory."""
    return hasher.hash("not a real password, only for timing")


class EditorError(ValueError):
    """A refused account change; the message is shown to the user."""


@dataclass(frozen=True)
class AuthResult:
    """Outcome of a login attempt. ``editor_id`` is set only on success."""

    ok: bool
    editor_id: int | None = None
    locked_until: datetime | None = None
    message: str = ""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalise_editor_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise EditorError(f"{raw!r} is not a valid email address: {exc}") from None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise EditorError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > 1024:
        raise EditorError("the password must be at most 1024 characters long")


def create_editor(session: Session, email: str, password: str, role: str = "editor") -> Editor:
    """Add an editor account (does not commit). Refuses duplicates, weak
    passwords and unknown roles with ``EditorError``."""
    if role not in EDITOR_ROLES:
        raise EditorError(f"role must be one of {', '.join(EDITOR_ROLES)}, not {role!r}")
    address = normalise_editor_email(email)
    check_password(password)
    if session.exec(select(Editor.id).where(Editor.email == address)).first() is not None:
        raise EditorError(f"an editor with the address {address} already exists")
    editor = Editor(email=address, password_hash=hash_password(password), role=role)
    session.add(editor)
    session.flush()
    return editor


def set_password(session: Session, editor: Editor, password: str) -> None:
    check_password(password)
    editor.password_hash = hash_password(password)
    editor.failed_logins = 0
    editor.locked_until = None
    session.add(editor)


def authenticate(email: str, password: str) -> AuthResult:
    """Check a login; count failures and lock the account after too many.

    Opens its own ``session_scope()``. The same generic message is returned
    for an unknown address and a wrong password (no account enumeration).
    """
    generic = "Wrong email address or password."
    try:
        address = normalise_editor_email(email)
    except EditorError:
        address = (email or "").strip().lower()
    now = clock.now()
    with session_scope() as session:
        editor = session.exec(select(Editor).where(Editor.email == address)).first()
        if editor is None or editor.disabled_at is not None:
            _verify(_dummy_hash(_hasher), password)
            return AuthResult(False, message=generic)
        if editor.locked_until is not None and editor.locked_until > now:
            return AuthResult(
                False, locked_until=editor.locked_until, message=_locked_message(editor.locked_until)
            )
        if not _verify(editor.password_hash, password):
            editor.failed_logins += 1
            if editor.failed_logins >= MAX_FAILED_LOGINS:
                editor.locked_until = now + timedelta(minutes=LOCKOUT_MINUTES)
                editor.failed_logins = 0
                session.add(editor)
                return AuthResult(
                    False, locked_until=editor.locked_until, message=_locked_message(editor.locked_until)
                )
            session.add(editor)
            return AuthResult(False, message=generic)
        if _hasher.check_needs_rehash(editor.password_hash):
            editor.password_hash = hash_password(password)
        editor.failed_logins = 0
        editor.locked_until = None
        editor.last_login_at = now
        session.add(editor)
        return AuthResult(True, editor_id=editor.id)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _locked_message(until: datetime) -> str:
    minutes = max(1, int((until - clock.now()).total_seconds() // 60) + 1)
    return (
        f"Too many wrong passwords: this account is locked for {minutes} more minute"
        f"{'s' if minutes != 1 else ''}. Try again later."
    )


def list_editors(session: Session) -> list[Editor]:
    return list(session.exec(select(Editor).order_by(Editor.email)))


def count_admins(session: Session) -> int:
    """Admins who can log in (a disabled admin does not count)."""
    return session.exec(
        select(func.count()).select_from(Editor).where(Editor.role == "admin", Editor.disabled_at.is_(None))
    ).one()


def find_editor(session: Session, email: str) -> Editor:
    editor = session.exec(select(Editor).where(Editor.email == normalise_editor_email(email))).first()
    if editor is None:
        raise EditorError(f"there is no editor {email}")
    return editor


def disable_editor(session: Session, email: str) -> Editor:
    """The account can no longer log in, and its sessions end; never the last admin."""
    editor = find_editor(session, email)
    if editor.disabled_at is None:
        if editor.role == "admin" and count_admins(session) <= 1:
            raise EditorError("the last admin who can log in cannot be disabled")
        editor.disabled_at = clock.now()
        session.add(editor)
    return editor


def enable_editor(session: Session, email: str) -> Editor:
    editor = find_editor(session, email)
    editor.disabled_at = None
    editor.failed_logins = 0
    editor.locked_until = None
    session.add(editor)
    return editor


def delete_editor(session: Session, editor_id: int, *, acting_id: int) -> None:
    """Remove an account; never yourself and never the last admin."""
    editor = session.get(Editor, editor_id)
    if editor is None:
        raise EditorError("no such editor")
    if editor.id == acting_id:
        raise EditorError("you cannot delete your own account")
    if editor.role == "admin" and count_admins(session) <= 1:
        raise EditorError("the last admin cannot be deleted")
    session.delete(editor)
