"""``Idempotency-Key``: a retried POST gets the first answer again, and the
action behind it runs once.

``begin`` inserts the key (with the request's hash) before the action runs,
in its own transaction: the unique (token, key) constraint makes exactly one
of any number of concurrent attempts the one that acts. The others find the
row: the stored response when it is finished, a conflict while it is in
progress, and a refusal when the same key comes with a different request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import IdempotencyRecord

MAX_KEY = 200


class KeyReused(Exception):
    """The key was used before with a different request (method, path or body)."""


class InProgress(Exception):
    """The first request with this key has not been answered yet."""


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    headers: dict


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def begin(token_ref: str, key: str, method: str, path: str, body: bytes) -> Stored | None:
    """None: this caller acts (and must ``finish`` or ``abandon``). Otherwise the stored answer."""
    wanted = request_hash(method, path, body)
    try:
        with session_scope() as session:
            session.add(
                IdempotencyRecord(
                    token_ref=token_ref, key=key, method=method, path=path[:500], request_hash=wanted
                )
            )
        return None
    except IntegrityError:
        pass
    with session_scope() as session:
        row = session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.token_ref == token_ref, IdempotencyRecord.key == key
            )
        ).first()
        if row is None:  # abandoned meanwhile: the caller may simply retry
            raise InProgress()
        if row.request_hash != wanted:
            raise KeyReused()
        if row.status_code == 0:
            raise InProgress()
        return Stored(row.status_code, row.response_body, json.loads(row.response_headers or "{}"))


def finish(token_ref: str, key: str, status: int, body: str, headers: dict) -> None:
    with session_scope() as session:
        row = session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.token_ref == token_ref, IdempotencyRecord.key == key
            )
        ).first()
        if row is not None:
            row.status_code = status
            row.response_body = body
            row.response_headers = json.dumps(headers)
            session.add(row)


def abandon(token_ref: str, key: str) -> None:
    """Forget a key whose action failed on our side (a 5xx), so a retry can act."""
    with session_scope() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.token_ref == token_ref, IdempotencyRecord.key == key
            )
        )


def purge(before: datetime) -> int:
    """Delete records older than ``before`` (run by the retention clean-up)."""
    with session_scope() as session:
        return session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < before)
        ).rowcount
