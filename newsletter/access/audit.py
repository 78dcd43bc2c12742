"""The audit log: one row per change made through the API or the editor.

Written by the faces (the API's request wrapper, the editor's after-request
hook) after the service answered, with the HTTP status, so refused attempts
are on the record too. Read by admins on the editor's audit page.
"""

from __future__ import annotations

from sqlmodel import Session, select

from newsletter.models import AuditEntry

PAGE = 50


def record(
    session: Session, *, actor: str, action: str, target: str = "", status: int = 0, detail: str = ""
) -> None:
    session.add(
        AuditEntry(
            actor=actor[:400], action=action[:100], target=target[:500], status=status, detail=detail[:1000]
        )
    )


def entries(
    session: Session, *, actor: str = "", before: int | None = None, limit: int = PAGE
) -> list[AuditEntry]:
    """Newest first, a keyset page on id."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor.startswith(actor[:400], autoescape=True))
    if before:
        query = query.where(AuditEntry.id < before)
    return list(session.exec(query))
