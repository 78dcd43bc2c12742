"""What the ``newsletter`` commands share for their output: errors with an
exit code, JSON for scripts (``--json``) and plain aligned columns for people.

Exit codes of the commands built on this: 0 done (doing again what is
already done is done too); 1 refused or failed, with the reason on stderr
(an unknown issue, article or address; a state that does not allow the
action; an invalid value); 2 bad usage (click's own).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import NoReturn

import click

EXIT_REFUSED = 1


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def emit_json(value) -> None:
    click.echo(json.dumps(value, default=_default, ensure_ascii=False, indent=2))


def emit_json_rows(rows: Iterable[dict]) -> None:
    """A JSON array written row by row (a million readers never sit in memory)."""
    first = True
    click.echo("[", nl=False)
    for row in rows:
        click.echo(
            ("\n  " if first else ",\n  ") + json.dumps(row, default=_default, ensure_ascii=False), nl=False
        )
        first = False
    click.echo("\n]" if not first else "]")


def emit_columns(rows: Iterable[Sequence], headers: Sequence[str], widths: Sequence[int]) -> int:
    """Rows as aligned columns (the last one unpadded), streamed; returns how many."""

    def line(values) -> str:
        cells = ["" if v is None else str(v) for v in values]
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    click.echo(line(headers))
    count = 0
    for row in rows:
        click.echo(line(row))
        count += 1
    return count


def when(value: datetime | None, tz=None) -> str:
    """A time for a column: local to ``tz`` when given, minutes only."""
    if value is None:
        return "-"
    return (value.astimezone(tz) if tz else value).strftime("%Y-%m-%d %H:%M %Z").strip()
