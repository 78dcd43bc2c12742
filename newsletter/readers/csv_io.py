"""CSV import and export of readers, streamed: a million rows in flat memory.

Import reads one physical line at a time (invalid UTF-8 is reported for its
line instead of stopping the file), validates each record with the service's
checks, and hands batches of valid candidates to ``service.subscribe_batch``
(the same rules as the form: suppressed addresses are refused, unsubscribed
readers are never resurrected, re-imports update names and topics).
Export writes rows as the database yields them (``yield_per``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from sqlmodel import Session, select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.readers import service

BATCH = 500
MAX_REPORTED = 10_000  # rejected lines kept for the report; the rest are only counted
COLUMNS = ("email", "name", "topics")
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "topics",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_source",
    "consent_at",
)
# What makes a spreadsheet read a cell as a formula (ASCII and full-width forms), even after spaces.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
GUARD = "'"
RESULT_REASONS = {
    "suppressed": "address is on the suppression list (erased, bounced or complained); not imported",
    "kept_unsubscribed": "reader has unsubscribed; an import does not subscribe them again",
}


class ImportFormatError(ValueError):
    """The file cannot be imported at all (no header, no email column)."""


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    rejected_total: int = 0

    def reject(self, line_no: int, reason: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append((line_no, reason))


class _Lines:
    """Physical lines as text; remembers which ones were not valid UTF-8."""

    def __init__(self, stream: Iterable):
        self._stream = stream
        self.bad: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self._stream, start=1):
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    self.bad.add(number)
                    line = line.decode("utf-8", "replace")
            elif number == 1:
                line = line.removeprefix("\ufeff")
            yield line


def _header(reader) -> dict[str, int]:
    try:
        names = next(reader)
    except StopIteration:
        raise ImportFormatError("the file is empty; expected a header row: email,name,topics") from None
    except csv.Error as exc:
        raise ImportFormatError(f"the header row is not valid CSV: {exc}") from None
    index = {name.strip().lower(): i for i, name in enumerate(names)}
    if "email" not in index:
        raise ImportFormatError("the header row has no 'email' column (expected: email,name,topics)")
    return {name: index[name] for name in COLUMNS if name in index} | {"_width": len(names)}


def _cell(row: list[str], index: dict[str, int], name: str) -> str | None:
    i = index.get(name)
    return unguard(row[i]) if i is not None and i < len(row) else None


def import_csv(settings, stream: Iterable, *, pending: bool = False, source: str = "import") -> ImportReport:
    """Import readers from CSV (a binary or text stream, header row first).
    Imported readers are active; with ``pending`` they get a confirmation mail."""
    lines = _Lines(stream)
    reader = csv.reader(lines)
    index = _header(reader)
    with session_scope() as session:
        available = [t.slug for t in service.topic_tags(session, settings)]
    report = ImportReport()
    consent = (
        service.CONSENT_TEXT
        if pending
        else f"Consent collected by the list owner before import ({clock.now().date().isoformat()})."
    )
    batch: list[service.Candidate] = []

    def flush() -> None:
        for candidate, result in service.subscribe_batch(
            settings, batch, source=source, consent_text=consent, double_opt_in=pending
        ):
            if result == "created":
                report.imported += 1
            elif result in RESULT_REASONS:
                report.reject(candidate.line_no, RESULT_REASONS[result])
            else:
                report.updated += 1
        batch.clear()

    previous = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.reject(reader.line_num, f"not valid CSV: {exc}")
            previous = reader.line_num
            continue
        first, last = previous + 1, reader.line_num
        previous = last
        if any(n in lines.bad for n in range(first, last + 1)):
            report.reject(first, "not valid UTF-8 text")
            lines.bad.difference_update(range(first, last + 1))
            continue
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) > index["_width"]:
            report.reject(first, f"{len(row)} columns, but the header has {index['_width']}")
            continue
        try:
            name = _cell(row, index, "name")
            topics = _cell(row, index, "topics")
            candidate = service.Candidate(
                email=service.normalise_email(_cell(row, index, "email"), settings),
                name=service.clean_name(name) if name and name.strip() else None,
                topics=service.clean_topics(topics, available) if topics and topics.strip() else None,
                line_no=first,
            )
        except service.InvalidInput as exc:
            report.reject(first, f"{exc.field}: {exc}")
            continue
        batch.append(candidate)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return report


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _safe(value) -> str:
    """Keep spreadsheet programs from running a cell as a formula: a cell
    whose first non-blank character could start one gets a leading ``'``
    (every cell: an address may begin with ``=``). ``unguard`` undoes it on
    import, so an export re-imports as it was. Control characters (a line
    break in a name would split the row for some readers) become spaces."""
    text = _CONTROL.sub(" ", "" if value is None else str(value))
    return GUARD + text if text.lstrip(" ").startswith(FORMULA_START) else text


def unguard(value: str) -> str:
    """A cell as it was before ``_safe`` guarded it."""
    if value.startswith(GUARD) and value[1:].lstrip(" ").startswith(FORMULA_START):
        return value[1:]
    return value


def _time(value) -> str:
    return value.isoformat() if value else ""


def export_csv(session: Session, out: IO[str], *, status: str | None = None) -> int:
    """Write every reader as CSV (topics separated by ";", so the file
    re-imports); rows are streamed from the database. Returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    query = select(
        Subscriber.email,
        Subscriber.name,
        Subscriber.status,
        Subscriber.topics,
        Subscriber.created_at,
        Subscriber.confirmed_at,
        Subscriber.unsubscribed_at,
        Subscriber.consent_source,
        Subscriber.consent_at,
    ).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    count = 0
    for email, name, state, topics, created, confirmed, left, consent_source, consent_at in session.exec(
        query.execution_options(yield_per=1000)
    ):
        cells = (email, name, state, topics.replace(",", ";"), _time(created), _time(confirmed),
                 _time(left), consent_source, _time(consent_at))  # fmt: skip
        writer.writerow([_safe(cell) for cell in cells])
        count += 1
    return count
