"""Editor accounts: creation, password hashing, authentication and sessions.

Passwords are hashed with Argon2id (argon2-cffi), a memory-hard scheme, so a
stolen table is expensive to brute-force: at the library's default cost,
except under the test suite (``NEWSLETTER_ENV=testing``), which hashes at
Argon2's minimal cost (``password_hasher``, the one place the cost is
chosen; the app factory applies it with ``use_settings``).

Guessing is slowed per *client*, never by locking an account (a stranger
could keep an admin out that way): every attempt from one client for one
typed address is counted in ``LoginThrottle`` with one atomic UPDATE, and
after ``FREE_ATTEMPTS`` each further attempt must wait twice as long as the
last (up to ``MAX_WAIT_SECONDS``). The answer is the same for an unknown
address, a wrong password and a known account (no enumeration); a throttled
client is told to wait, whoever it asked about. Wrong passwords are also
counted on the account (atomically), for the admins to see. The per-IP
request rate limit lives on the login view (Flask-Limiter).

Sessions carry the editor's ``session_version``; logging out and changing
the password bump it, which ends every session of that editor
(``editor.auth``'s user loader compares it).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from newsletter import clock
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import EDITOR_ROLES, Editor, LoginThrottle

FREE_ATTEMPTS = 5  # attempts per client and address before each one must wait
MAX_WAIT_SECONDS = 15 * 60
MIN_PASSWORD_LENGTH = 10
GENERIC_REFUSAL = "Wrong email address or password."

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
    """Outcome of a login attempt. ``editor_id`` is set only on success;
    ``retry_after`` (seconds) when this client must wait before trying again."""

    ok: bool
    editor_id: int | None = None
    retry_after: int | None = None
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
    """A new password; every session the editor has is ended."""
    check_password(password)
    editor.password_hash = hash_password(password)
    editor.failed_logins = 0
    editor.session_version += 1
    session.add(editor)


def end_sessions(editor_id: int) -> None:
    """End every session of an editor (logout: a copied cookie stops working too)."""
    with session_scope() as session:
        session.execute(
            update(Editor).where(Editor.id == editor_id).values(session_version=Editor.session_version + 1)
        )


def session_id(editor: Editor) -> str:
    """What the session stores as the user id: the id and the session version."""
    return f"{editor.id}:{editor.session_version}"


def editor_for_session(value: str) -> Editor | None:
    """The editor a session's user id names, if that session is still valid."""
    editor_id, _, version = value.partition(":")
    if not (editor_id.isascii() and editor_id.isdigit() and version.isascii() and version.isdigit()):
        return None
    if len(editor_id) > 10 or len(version) > 10:
        return None
    with session_scope() as session:
        editor = session.get(Editor, int(editor_id))
        # A disabled account's sessions end with it (`newsletter editor disable`).
        if editor is None or editor.session_version != int(version) or editor.disabled_at is not None:
            return None
        return editor


# --- logging in --------------------------------------------------------------------


def throttle_key(client: str, address: str) -> str:
    return hashlib.sha256(f"{client}\n{address}".encode()).hexdigest()


def wait_after(attempts: int) -> int:
    """Seconds the next attempt must wait after ``attempts`` (0 for the first few)."""
    if attempts < FREE_ATTEMPTS:
        return 0
    return min(2 ** (attempts - FREE_ATTEMPTS), MAX_WAIT_SECONDS)


def _take_attempt(key: str, now: datetime) -> int:
    """Count one attempt for ``key`` atomically; 0 when it may go ahead, else
    the seconds to wait. The UPDATE locks the row until commit (PostgreSQL) or
    holds the write lock (SQLite), so concurrent attempts are counted one by one."""
    for _ in range(3):
        try:
            with session_scope() as session:
                counted = session.execute(
                    update(LoginThrottle)
                    .where(LoginThrottle.key == key)
                    .values(failures=LoginThrottle.failures + 1, updated_at=now)
                ).rowcount
                if not counted:
                    session.add(LoginThrottle(key=key, failures=1, updated_at=now))
                    session.flush()
                row = session.get(LoginThrottle, key, populate_existing=True)
                if row.blocked_until is not None and row.blocked_until > now:
                    return max(1, math.ceil((row.blocked_until - now).total_seconds()))
                wait = wait_after(row.failures)
                row.blocked_until = now + timedelta(seconds=wait) if wait else None
                session.add(row)
                return 0
        except IntegrityError:  # a concurrent first attempt inserted the row: count again
            continue
    return 1


def authenticate(email: str, password: str, *, client: str = "") -> AuthResult:
    """Check a login from ``client`` (the request's address; "" from the CLI).

    Opens its own units of work. Every refusal of a password reads the same,
    for unknown and known addresses alike, and costs the same (a dummy hash
    is verified for an unknown address). Too many attempts from this client
    for this address make it wait (``retry_after``); no account is locked.
    """
    try:
        address = normalise_editor_email(email)
    except EditorError:
        address = (email or "").strip().lower()[:320]
    now = clock.now()
    wait = _take_attempt(throttle_key(client, address), now)
    if wait:
        return AuthResult(False, retry_after=wait, message=_wait_message(wait))
    with session_scope() as session:
        editor = session.exec(select(Editor).where(Editor.email == address)).first()
        if editor is None or editor.disabled_at is not None:
            _verify(_dummy_hash(_hasher), password)
            return AuthResult(False, message=GENERIC_REFUSAL)
        if not _verify(editor.password_hash, password):
            session.execute(
                update(Editor).where(Editor.id == editor.id).values(failed_logins=Editor.failed_logins + 1)
            )
            return AuthResult(False, message=GENERIC_REFUSAL)
        values = {"failed_logins": 0, "last_login_at": now}
        if _hasher.check_needs_rehash(editor.password_hash):
            values["password_hash"] = hash_password(password)
        session.execute(update(Editor).where(Editor.id == editor.id).values(**values))
        session.execute(delete(LoginThrottle).where(LoginThrottle.key == throttle_key(client, address)))
        return AuthResult(True, editor_id=editor.id)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _wait_message(seconds: int) -> str:
    shown = f"{seconds} second{'s' if seconds != 1 else ''}" if seconds < 120 else f"{seconds // 60} minutes"
    return f"Too many attempts from your connection: wait {shown}, then try again."


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
