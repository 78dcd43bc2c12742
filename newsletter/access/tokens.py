"""Scoped API tokens: made once (the secret is shown once, only its SHA-256 is
kept), listed, revoked, and checked on every API request.

The secrets are 256-bit random strings, so a plain SHA-256 is the right
hash: there is nothing to guess that a slow hash would protect. The tokens
of ``NEWSLETTER_API_TOKENS`` keep working as tokens with every scope; they
are not stored, so they cannot be revoked here (remove them from the
setting).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import Session, select

from newsletter import clock
from newsletter.models import API_SCOPES, ApiToken

PREFIX = "gts_"
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often per token


class TokenInvalid(ValueError):
    """A refused token request (bad name or scope); the message says why."""


@dataclass(frozen=True)
class Principal:
    """The authenticated API client. ``ref`` is stable per token: the rate limit,
    idempotency records and article scope are keyed on it."""

    ref: str
    name: str
    scopes: frozenset[str]
    token_id: int | None = None

    @property
    def actor(self) -> str:
        return (
            f"token:{self.token_id} {self.name}" if self.token_id else f"{self.ref} (NEWSLETTER_API_TOKENS)"
        )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def clean_scopes(scopes) -> list[str]:
    """Validated, de-duplicated scopes in the canonical order; ``*`` means all."""
    chosen: list[str] = []
    for raw in scopes:
        for scope in str(raw).replace(",", " ").split():
            if scope == "*":
                return list(API_SCOPES)
            if scope not in API_SCOPES:
                raise TokenInvalid(f"unknown scope {scope[:40]!r}; scopes are {', '.join(API_SCOPES)}")
            chosen.append(scope)
    if not chosen:
        raise TokenInvalid("choose at least one scope")
    return [s for s in API_SCOPES if s in chosen]


def create_token(session: Session, *, name: str, scopes, created_by: str = "") -> tuple[ApiToken, str]:
    """Make a token; returns the row and the secret (shown once, never stored)."""
    name = " ".join(str(name or "").split())
    if not name:
        raise TokenInvalid("give the token a name (who or what uses it)")
    if len(name) > 100:
        raise TokenInvalid("the name is longer than 100 characters")
    chosen = clean_scopes(scopes)
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=hash_secret(secret),
        prefix=secret[:10],
        scopes=",".join(chosen),
        created_by=(created_by or "")[:320],
    )
    session.add(row)
    session.flush()
    return row, secret


def list_tokens(session: Session, *, include_revoked: bool = True) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.exec(query))


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revoke a token (idempotent); it stops working at once."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise LookupError(f"there is no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        session.add(row)
    return row


def authenticate(session: Session, secret: str, env_tokens: tuple[str, ...]) -> Principal | None:
    """The principal for a bearer secret, or None (unknown, revoked or empty).

    Environment tokens are compared with every configured one in constant
    time; stored tokens are found by the hash of the secret."""
    if not secret:
        return None
    given = secret.encode("utf-8", "surrogatepass")
    env_match = None
    for n, token in enumerate(env_tokens):
        if hmac.compare_digest(given, token.encode()) and env_match is None:
            env_match = (n, token)
    if env_match is not None:
        n, token = env_match
        return Principal(
            ref=f"env:{hash_secret(token)[:16]}", name=f"env token {n + 1}", scopes=frozenset(API_SCOPES)
        )
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    now = clock.now()
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == row.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )
    return Principal(ref=f"token:{row.id}", name=row.name, scopes=frozenset(row.scope_list), token_id=row.id)
