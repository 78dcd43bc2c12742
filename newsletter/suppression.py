"""The suppression list: addresses we must never mail again.

Kept as SHA-256 of the normalised address, so an erased reader's address is
not stored in clear, yet a later import or subscribe of it is refused.
"""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from newsletter.models import Suppression


def email_hash(email: str) -> str:
    """Hash of the normalised (already lower-cased domain) address."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    return (
        session.exec(select(Suppression.id).where(Suppression.email_hash == email_hash(email))).first()
        is not None
    )


def suppression_reason(session: Session, email: str) -> str | None:
    return session.exec(select(Suppression.reason).where(Suppression.email_hash == email_hash(email))).first()


def suppress(session: Session, email: str, reason: str, detail: str = "") -> Suppression:
    """Add the address (idempotent: the first reason is kept)."""
    digest = email_hash(email)
    existing = session.exec(select(Suppression).where(Suppression.email_hash == digest)).first()
    if existing:
        return existing
    row = Suppression(email_hash=digest, reason=reason, detail=detail[:500])
    session.add(row)
    session.flush()
    return row


def unsuppress(session: Session, email: str) -> bool:
    row = session.exec(select(Suppression).where(Suppression.email_hash == email_hash(email))).first()
    if row is None:
        return False
    session.delete(row)
    return True
