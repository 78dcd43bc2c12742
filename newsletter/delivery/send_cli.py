"""``newsletter issue send N``: send now and wait, with a progress bar.

The command a user runs for a send, so it must be quick from its first
second. ``newsletter.__main__`` runs ``standalone`` for ``issue send``
without building the web app: this module and what it imports are the
delivery engine, click and rich — no Flask extension, view or editor (tests
check that). ``flask --app wsgi issue send`` and the app's own CLI reach the
same ``run_send`` through ``delivery.commands``.

The send itself is ``deliver.deliver``, the one entry point the editor's
"send now", the scheduler and the API call too. The progress bar is started
by ``deliver``'s ``on_started``, once the sending processes exist: its
refresh thread must not keep them from forking (``delivery.processes``).

Exit codes: 0 all delivered (or skipped with a reason); 1 some messages
failed, or the issue is unknown; 2 usage/configuration; 3 the send stopped
before the end (paused, cancelled, interrupted) — run it again to continue.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import click
from sqlalchemy import func, select

from newsletter import db
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.db import session_scope
from newsletter.delivery import send
from newsletter.delivery.batch import DispatchStats
from newsletter.delivery.deliver import deliver
from newsletter.delivery.fanout import audience_count
from newsletter.delivery.transports import check_dsn
from newsletter.issues import states
from newsletter.models import Delivery, Issue

EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def summary(counts) -> str:
    return (
        f"issue {counts.number}: {counts.status} — {counts.sent} sent, {counts.failed} failed, "
        f"{counts.skipped} skipped, {counts.remaining} remaining of {counts.total}"
    )


class _Bar:
    """A rich progress bar: sent / failed / remaining, rate and ETA.

    rich is imported here, when the senders have started (``deliver``'s
    ``on_started``), not with the command: the forked senders and this
    process's own are already sending while it loads."""

    def __init__(self, start, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.sent, self.failed, self.skipped = start.sent, start.failed, start.skipped
        self.total = start.total or None  # None (0 in ``start``) while the fan-out still adds rows
        self.started = time.monotonic()
        self.base = self.done
        self.progress = Progress(
            TextColumn("[bold]Issue {task.fields[number]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("send", total=self.total, number=start.number, detail="", rate="")
        self.lock = threading.Lock()

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    def update(self, start, batch) -> None:
        with self.lock:
            if start.total and start.total != self.total:  # the fan-out has ended: the total is known
                self.total = start.total
                self.progress.update(self.task, total=self.total)
            self.sent += batch.sent
            self.failed += batch.failed
            self.skipped += batch.skipped
            elapsed = max(0.001, time.monotonic() - self.started)
            rate = (self.done - self.base) / elapsed
            remaining = f"{max(0, self.total - self.done)}" if self.total else "(readers still being added)"
            detail = f"sent {self.sent} · failed {self.failed} · remaining {remaining}"
            self.progress.update(self.task, completed=self.done, detail=detail, rate=f"{rate:,.0f} msg/s")


def _wait_for_workers(settings, number: int, bar: _Bar, stop: threading.Event):
    """Worker mode: the workers send; follow the counts until the issue leaves `sending`."""
    while not stop.wait(1.0):
        counts = send.counts_for(number)
        with bar.lock:
            bar.sent, bar.failed, bar.skipped = counts.sent, counts.failed, counts.skipped
        bar.update(counts, DispatchStats())
        if counts.status != states.SENDING:
            return counts
    return send.counts_for(number)


def run_send(settings: Settings, number: int, yes: bool) -> None:
    """The body of ``issue send``, whichever way the command was reached."""
    try:
        counts = send.counts_for(number)
    except send.UnknownIssue as exc:
        fail(str(exc))
    if counts.status == states.PAUSED:
        fail(f"issue {number} is paused; `newsletter issue resume {number}` first", EXIT_UNFINISHED)
    if counts.status not in states.STARTABLE | {states.SENDING}:
        fail(
            f"issue {number} is {counts.status}; only an approved or scheduled issue can be sent", EXIT_USAGE
        )
    if not yes:
        if counts.status == states.SENDING:
            who = counts.remaining
        else:
            with session_scope() as session:
                who = audience_count(session)
        verb = "Continue sending" if counts.status == states.SENDING else "Send"
        click.confirm(
            f"{verb} issue {number} to {who} readers via {settings.transport.split(':')[0]}?", abort=True
        )

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    holder = {}
    made = threading.Lock()  # the first report may come from a sender thread or from on_started

    def progress(start, batch):
        with made:
            if "bar" not in holder:
                holder["bar"] = _Bar(start)
                holder["bar"].progress.start()
        holder["bar"].update(start, batch)

    try:
        final = deliver(settings, number, here=True, progress=progress, stop=stop)
        if settings.broker_url:
            bar = _Bar(final)
            with bar.progress:
                final = _wait_for_workers(settings, number, bar, stop)
    except KeyboardInterrupt:
        stop.set()
        fail(f"interrupted; run `newsletter issue send {number}` again to continue", EXIT_UNFINISHED)
    except send.DeliveryError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        if "bar" in holder:
            holder["bar"].progress.stop()
        signal.signal(signal.SIGTERM, previous)
    click.echo(summary(final))
    for error in dict.fromkeys(final.errors):
        click.echo(f"  transport: {error}", err=True)
    if final.failed:
        print_failures(number)
        sys.exit(EXIT_FAILED)
    if final.status != states.SENT:
        sys.exit(EXIT_UNFINISHED)


def print_failures(number: int, limit: int = 10) -> None:
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.last_error, func.count())
            .join(Issue, Issue.id == Delivery.issue_id)
            .where(Issue.number == number, Delivery.status == "failed")
            .group_by(Delivery.last_error)
            .order_by(func.count().desc())
            .limit(limit)
        ).all()
    for error, count in rows:
        click.echo(f"  failed ×{count}: {error}", err=True)


@click.command("send")
@click.argument("number", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def standalone(number: int, yes: bool):
    """Send issue NUMBER now and wait: progress bar, non-zero exit if anything failed.

    Running it again continues an interrupted or crashed send; nobody gets the issue twice.
    """
    try:
        settings = load_settings()
        check_dsn(settings.transport)
    except (ConfigError, ValueError) as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    db.init_engine(settings.database_url)
    run_send(settings, number, yes)
