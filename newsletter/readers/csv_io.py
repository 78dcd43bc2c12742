"""CSV import and export of readers, streamed: a million rows in flat memory.

Import, in four steps, each its own module:

1. ``import_file`` reads the bytes as people's tools write them (UTF-8 with
   or without BOM, UTF-16, Windows-1252 and other code pages, comma,
   semicolon or tab, CR-only line ends, ZIP archives of CSV files);
2. ``import_formats`` recognises the service that wrote the file by its
   header row (or is told, ``--from``) and says what each row means:
   address, name, tags, status, consent and leaving dates;
3. each line is checked here with the readers' own checks (address, name,
   topics; tags become topics where they match a section); a bad line is
   reported with its number and the rest is kept;
4. ``imports.import_batch`` applies batches of ``BATCH`` lines, one
   transaction each. A dry run applies them all in one transaction that is
   rolled back, so the preview is exactly what the import would do.

Export writes rows as the database yields them (``yield_per``).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from sqlmodel import Session, select

from newsletter import clock, zones
from newsletter.content.service import slugify
from newsletter.db import get_engine, session_scope
from newsletter.models import Subscriber
from newsletter.readers import service
from newsletter.readers.import_file import ImportFormatError, Table, open_tables
from newsletter.readers.import_formats import (
    ACTIVE,
    OPTED_OUT,
    Columns,
    Layout,
    Record,
    RowError,
    file_hint,
    layout_for,
    recognise,
)
from newsletter.readers.imports import (
    ADDED,
    KEPT,
    NOT_CONFIRMED,
    REFUSED,
    UNCHANGED,
    UPDATED,
    Applied,
    Incoming,
    import_batch,
)

BATCH = 500
MAX_REPORTED = 10_000  # rejected lines and changes kept for the report; the rest are only counted
TIMEZONE_COLUMNS = ("timezone", "time zone", "time_zone", "tz")  # optional: the reader's IANA zone
SAMPLE_ROWS = 5
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
    "timezone",  # last, so files read by column position before it came still line up
)
# What makes a spreadsheet read a cell as a formula (ASCII and full-width forms), even after spaces.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
GUARD = "'"
REJECTED = "rejected"
# The report's lines, in order: what each import line did.
OUTCOMES = (
    (ADDED, "added"),
    (UPDATED, "updated"),
    (UNCHANGED, "unchanged"),
    (KEPT, "kept the reader's own choices"),
    *((status, f"suppressed: {status}") for status in OPTED_OUT),
    (NOT_CONFIRMED, "not imported: never confirmed there"),
    ("suppressed", "not imported: on our suppression list"),
    ("kept_unsubscribed", "not imported: unsubscribed here"),
    (REJECTED, "rejected: lines that cannot be read"),
)

__all__ = ["ImportFormatError", "ImportReport", "export_csv", "import_csv"]


@dataclass
class FileRead:
    """How one file (or ZIP member) was read."""

    name: str
    layout: str  # "Mailchimp", "CSV", …
    encoding: str  # "UTF-8 (detected)", …
    delimiter: str  # "comma", …
    rows: int = 0


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # bad lines and refusals, by line
    rejected_total: int = 0
    counts: Counter = field(default_factory=Counter)  # by outcome (OUTCOMES)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (file:line, address, what)
    changes_total: int = 0
    files: list[FileRead] = field(default_factory=list)
    unmatched_tags: Counter = field(default_factory=Counter)  # tags that are no section (ignored)
    samples: list[tuple[str, str, str]] = field(default_factory=list)  # (address, name, status) as read
    timezone_fallbacks: int = 0  # lines whose time zone we do not know (NEWSLETTER_TIMEZONE used)
    dry_run: bool = False

    def reject(self, line_no: int, reason: str, *, refused: bool = False) -> None:
        self.rejected_total += 1
        if not refused:
            self.counts[REJECTED] += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append((line_no, reason))

    def record(self, applied: Applied) -> None:
        self.counts[applied.result] += 1
        if applied.result == ADDED:
            self.imported += 1
        elif applied.result == UPDATED:
            self.updated += 1
        elif applied.result in REFUSED:
            self.reject(applied.incoming.line_no, REFUSED[applied.result], refused=True)
        if applied.change:
            self.changes_total += 1
            if len(self.changes) < MAX_REPORTED:
                self.changes.append((applied.incoming.where, applied.incoming.email, applied.change))

    @property
    def summary(self) -> list[tuple[str, str, int]]:
        """(outcome, label, count) for every outcome that happened (and "added" always)."""
        return [(key, label, self.counts[key]) for key, label in OUTCOMES if self.counts[key] or key == ADDED]


class _Topics:
    """Tags and topics → the sections' slugs."""

    def __init__(self, settings):
        with session_scope() as session:
            tags = service.topic_tags(session, settings)
        self.available = [t.slug for t in tags]
        self.by_name = {key: t.slug for t in tags for key in (t.slug, t.name.lower(), slugify(t.name))}

    def of(self, record: Record, report: ImportReport) -> str | None:
        if record.topics is not None:  # our own export: slugs, unknown ones reject the line
            return service.clean_topics(record.topics, self.available) if record.topics.strip() else None
        matched = []
        for tag in record.tags:
            slug = self.by_name.get(tag.lower()) or self.by_name.get(slugify(tag))
            if slug:
                matched.append(slug)
            elif len(report.unmatched_tags) < 50 or tag in report.unmatched_tags:
                report.unmatched_tags[tag] += 1
        return service.clean_topics(matched, self.available) if matched else None


def _consent_text(layout: Layout, record: Record, pending: bool, today: str) -> str:
    if pending:
        return service.CONSENT_TEXT
    if layout.key in ("csv", "signal"):
        return f"Consent collected by the list owner before import ({today})."
    when = f" on {record.consent_at.date().isoformat()}" if record.consent_at else ""
    return f"Consent collected by the list owner at {layout.label}{when}; imported {today}."


def _incoming(settings, layout, cols, cells, hint, topics, report, *, pending, today) -> Incoming:
    """One line → a checked reader; raises InvalidInput or RowError."""
    record = layout.read(cols, [unguard(cell) for cell in cells])  # our own export's guards undone
    if hint and record.status == ACTIVE:
        record.status, record.detail = hint
    name = record.name
    zone, fell_back = zones.clean_zone(
        cols.get(cells, *TIMEZONE_COLUMNS) if cols.has(*TIMEZONE_COLUMNS) else None
    )
    report.timezone_fallbacks += fell_back
    return Incoming(
        email=service.normalise_email(record.email, settings),
        name=service.clean_name(name) if name and name.strip() else None,
        topics=topics.of(record, report),
        status=record.status,
        detail=record.detail,
        consent_at=record.consent_at,
        left_at=record.left_at,
        consent_text=_consent_text(layout, record, pending, today),
        timezone=zone or None,
    )


def import_csv(
    settings,
    stream: IO[bytes],
    *,
    pending: bool = False,
    update: bool = False,
    dry_run: bool = False,
    from_service: str | None = None,
    encoding: str | None = None,
    name: str = "file",
    progress: Callable[[Table, int], None] | None = None,
) -> ImportReport:
    """Import readers from a CSV file or a ZIP of them (binary stream, header
    row first): our own export, another service's (recognised by its
    header, or named by ``from_service``: see ``import_formats.SOURCE_NAMES``) or
    any CSV with an email column. New readers are active; with ``pending``
    they get a confirmation mail. ``update`` lets the file change readers'
    own choices. ``dry_run`` writes nothing and reports what would happen.
    ``progress(table, rows)`` is called after each batch."""
    report = ImportReport(dry_run=dry_run)
    topics = _Topics(settings)
    today = clock.now().date().isoformat()
    held = Session(get_engine()) if dry_run else None  # one transaction, rolled back at the end
    counted = [0]  # zone fallbacks already recorded

    def flush(batch: list[Incoming]) -> None:
        if held is not None:
            applied, _ = import_batch(held, settings, batch, pending=pending, update=update)
            held.expunge_all()
        else:
            with session_scope() as session:
                applied, mails = import_batch(session, settings, batch, pending=pending, update=update)
                for subscriber_id, address, _name in mails:  # queued with the readers they confirm
                    service.queue_confirmation(session, settings, subscriber_id, address)
                service.count_zone_fallbacks(session, report.timezone_fallbacks - counted[0], detail="import")
                counted[0] = report.timezone_fallbacks
        for one in applied:
            report.record(one)
        batch.clear()

    recognised = lambda cells: recognise(cells) is not None  # noqa: E731 - the delimiter chooser's test
    try:
        for table in open_tables(stream, name=name, encoding=encoding, recognises=recognised):
            try:
                layout = layout_for(table.header, from_service)
            except LookupError as exc:
                raise ImportFormatError(f"{table.name}: {exc}") from None
            read = FileRead(table.name, layout.label, table.encoding.label, table.delimiter_name)
            report.files.append(read)
            cols, hint = Columns(table.header), file_hint(table.name)
            prefix = f"{table.name.rsplit(':', 1)[-1]}: " if table.name != name else ""
            batch: list[Incoming] = []
            for line_no, cells, problem in table.rows():
                if cells is None:
                    report.reject(line_no, prefix + problem)
                    continue
                if not any(cell.strip() for cell in cells):
                    continue  # blank line
                read.rows += 1
                if len(cells) > cols.width:
                    report.reject(line_no, f"{prefix}{len(cells)} columns, but the header has {cols.width}")
                    continue
                try:
                    incoming = _incoming(
                        settings, layout, cols, cells, hint, topics, report, pending=pending, today=today
                    )
                except service.InvalidInput as exc:
                    report.reject(line_no, f"{prefix}{exc.field}: {exc}")
                    continue
                except RowError as exc:
                    report.reject(line_no, f"{prefix}{exc}")
                    continue
                incoming.line_no, incoming.where = line_no, f"{table.name}:{line_no}"
                if len(report.samples) < SAMPLE_ROWS:
                    report.samples.append((incoming.email, incoming.name or "", incoming.status))
                batch.append(incoming)
                if len(batch) >= BATCH:
                    flush(batch)
                    if progress:
                        progress(table, read.rows)
            if batch:
                flush(batch)
            if progress:
                progress(table, read.rows)
    finally:
        if held is not None:
            held.rollback()
            held.close()
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
        Subscriber.timezone,
    ).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    count = 0
    for row in session.exec(query.execution_options(yield_per=1000)):
        email, name, state, topics, created, confirmed, left, consent_source, consent_at, zone = row
        cells = (email, name, state, topics.replace(",", ";"), _time(created), _time(confirmed),
                 _time(left), consent_source, _time(consent_at), zone)  # fmt: skip
        writer.writerow([_safe(cell) for cell in cells])
        count += 1
    return count
