"""The wire journal: each message the server took, written the moment it said so.

Outcomes go to the database once a batch is over (a write a batch, not one a
message). A sender killed in the middle of a batch leaves its rows
``sending``; when their lease expires they go back to the queue, and without
this journal every message the server had already accepted would go out a
second time (the crash tests counted 156 of 200 in flight).

So each sender (a dispatch loop: a thread, a sending process's thread, a
Dramatiq actor's call) appends one line per accepted message to a file of
its own, ``<instance>/send-journal/<worker>.log``, with a plain ``os.write``:
the kernel keeps what was written even if the process is killed the next
instant. It holds an exclusive ``flock`` on the file while it lives, and
empties the file once the batch's outcomes are committed. Before expired
leases are put back in the queue (``queue.reclaim_expired_leases``),
``settle`` reads every journal whose lock is free — its owner is dead —,
marks the rows it lists as sent (only rows still ``sending`` under that
owner's lease), and deletes it.

What is left is SMTP's own window (RFC 1047): a message whose end the server
had received but whose reply had not reached us when the process died. And
the journal is on the sending machine's disk: senders on several machines
need the instance folder on each (a restarted sender settles its machine's
journals); a machine lost whole may resend what was on its wire.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from newsletter.config import Settings
from newsletter.db import get_engine
from newsletter.models import Delivery

log = logging.getLogger(__name__)

deliveries = Delivery.__table__

_HEADER = "# worker "
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._:-]")
_UNSAFE_VALUE = re.compile(r"[\t\r\n]")


def directory(settings: Settings) -> Path:
    return Path(settings.instance_path) / "send-journal"


class Journal:
    """One sender's journal: open while the sender lives, locked by it."""

    def __init__(self, settings: Settings, worker_id: str):
        folder = directory(settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_UNSAFE_NAME.sub('_', worker_id)}.log"
        # Created under another name, locked, then renamed: a settler never
        # sees the file unlocked (it would take it for a dead sender's).
        making = self.path.with_suffix(".new")
        self.fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        header = f"{_HEADER}{worker_id}\n".encode()
        os.write(self.fd, header)
        self.header_length = len(header)
        os.rename(making, self.path)

    def accepted(self, message, result) -> None:
        """The transport's ``accepted`` callback: the server has taken ``message``."""
        mid, pmid = message.message_id or "", (result.provider_message_id or "")[:300]
        if _UNSAFE_VALUE.search(mid) or _UNSAFE_VALUE.search(pmid):  # (never ours; a provider's might)
            mid, pmid = _UNSAFE_VALUE.sub("", mid), _UNSAFE_VALUE.sub("", pmid)
        os.write(self.fd, f"{message.delivery_id}\t{time.time():.3f}\t{mid}\t{pmid}\n".encode())

    def clear(self) -> None:
        """The batch's outcomes are committed: what the journal says is known."""
        os.ftruncate(self.fd, self.header_length)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SETTLE_SQL = (
    "UPDATE delivery SET status = 'sent', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, "
    "message_id = {p}, provider_message_id = {p}, last_error = '', sent_at = {p}, updated_at = {p} "
    "WHERE id = {p} AND status = 'sending' AND lease_owner = {p}"
)


@contextmanager
def kept(settings: Settings, worker_id: str) -> Iterator[Journal | None]:
    """A sender's journal for as long as it sends, or None (with a warning)
    where the instance folder cannot be written: the send goes on, as it did
    before the journal, with a crash able to resend what was in flight."""
    try:
        journal = Journal(settings, worker_id)
    except OSError as exc:
        log.warning("no wire journal (%s): a crash may resend the batch in flight", exc)
        yield None
        return
    with journal:
        yield journal


def settle(settings: Settings) -> int:
    """Record as sent what dead senders' journals say the server accepted;
    returns how many rows that settled."""
    folder = directory(settings)
    if not folder.is_dir():
        return 0
    settled = 0
    for path in folder.glob("*.log"):  # (never a ".new" one: it is being made, not yet locked)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its sender closed it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its sender is alive
            with os.fdopen(os.dup(fd), "rb") as content:
                settled += _apply(content.read().decode("utf-8", "replace"))
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    if settled:
        log.warning("settled %s rows a dead sender had sent (its wire journal)", settled)
    return settled


def _apply(text: str) -> int:
    lines = text.splitlines()
    if not lines or not lines[0].startswith(_HEADER):
        return 0
    worker = lines[0][len(_HEADER) :]
    rows = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 4 or not fields[0].isdigit():
            continue  # a line cut short by the kill: the message may not have been accepted
        row_id, at, message_id, provider_id = fields
        try:
            when = datetime.fromtimestamp(float(at), UTC)
        except ValueError:
            continue
        rows.append((int(row_id), when, message_id or None, provider_id or None))
    if not rows:
        return 0
    with get_engine().begin() as connection:
        dialect = connection.dialect
        to_db = deliveries.c.sent_at.type.bind_processor(dialect)
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        stamp = to_db or (lambda value: value)
        result = connection.exec_driver_sql(
            _SETTLE_SQL.format(p=marker),
            [(mid, pmid, stamp(when), stamp(when), row_id, worker) for row_id, when, mid, pmid in rows],
        )
        return max(0, result.rowcount or 0)
