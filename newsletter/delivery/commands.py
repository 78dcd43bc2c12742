"""CLI of the delivery engine: ``issue send|status|pause|resume|cancel-send|test``
and ``worker``. Thin faces over ``delivery.deliver`` and ``delivery.send``.

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
from flask.cli import with_appcontext
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select

from newsletter import zones
from newsletter.db import session_scope
from newsletter.delivery import send
from newsletter.delivery.batch import DispatchStats
from newsletter.delivery.deliver import deliver, resume
from newsletter.delivery.fanout import audience_count
from newsletter.delivery.testsend import send_test
from newsletter.delivery.worker import run_worker
from newsletter.extensions import settings as _settings
from newsletter.issues import states
from newsletter.models import Delivery, Issue

EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED = 1, 2, 3


def _fail(message: str, code: int = EXIT_FAILED):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _summary(counts) -> str:
    return (
        f"issue {counts.number}: {counts.status} — {counts.sent} sent, {counts.failed} failed, "
        f"{counts.skipped} skipped, {counts.remaining} remaining of {counts.total}"
    )


class _Bar:
    """A rich progress bar: sent / failed / remaining, rate and ETA."""

    def __init__(self, start, console=None):
        self.sent, self.failed, self.skipped = start.sent, start.failed, start.skipped
        self.total = start.total
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

    def update(self, _start, batch) -> None:
        with self.lock:
            self.sent += batch.sent
            self.failed += batch.failed
            self.skipped += batch.skipped
            elapsed = max(0.001, time.monotonic() - self.started)
            rate = (self.done - self.base) / elapsed
            detail = f"sent {self.sent} · failed {self.failed} · remaining {max(0, self.total - self.done)}"
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


@click.command("send")
@with_appcontext
@click.argument("number", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def send_command(number: int, yes: bool):
    """Send issue NUMBER now and wait: progress bar, non-zero exit if anything failed.

    Running it again continues an interrupted or crashed send; nobody gets the issue twice.
    """
    settings = _settings()
    try:
        counts = send.counts_for(number)
    except send.UnknownIssue as exc:
        _fail(str(exc))
    if counts.status == states.PAUSED:
        _fail(f"issue {number} is paused; `newsletter issue resume {number}` first", EXIT_UNFINISHED)
    if counts.status not in states.STARTABLE | {states.SENDING}:
        _fail(
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

    def progress(start, batch):
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
        _fail(f"interrupted; run `newsletter issue send {number}` again to continue", EXIT_UNFINISHED)
    except send.DeliveryError as exc:
        _fail(str(exc), EXIT_USAGE)
    finally:
        if "bar" in holder:
            holder["bar"].progress.stop()
        signal.signal(signal.SIGTERM, previous)
    click.echo(_summary(final))
    for error in dict.fromkeys(final.errors):
        click.echo(f"  transport: {error}", err=True)
    if final.failed:
        _print_failures(number)
        sys.exit(EXIT_FAILED)
    if final.status != states.SENT:
        sys.exit(EXIT_UNFINISHED)


def _print_failures(number: int, limit: int = 10) -> None:
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


@click.command("status")
@with_appcontext
@click.argument("number", type=int)
def status_command(number: int):
    """Where the send of issue NUMBER stands (exit 1 if there is no such issue)."""
    try:
        counts = send.counts_for(number)
    except send.UnknownIssue as exc:
        _fail(str(exc))
    click.echo(_summary(counts))
    if counts.failed:
        _print_failures(number)
    _print_zones(number)


def _print_zones(number: int) -> None:
    """Local-time delivery: sent and still-scheduled readers by zone, earliest zone first."""
    by_zone = send.zone_counts(number)
    if not by_zone:
        return
    click.echo("by zone (each reader at the slot's time in their own zone):")
    width = max(len(z.zone) for z in by_zone)
    for z in by_zone:
        line = f"  {z.zone:<{width}}  {z.sent:>7} sent  {z.scheduled:>7} scheduled"
        extra = [
            f"{n} {what}" for n, what in ((z.other, "due"), (z.failed, "failed"), (z.skipped, "skipped")) if n
        ]
        if extra:
            line += "  (" + ", ".join(extra) + ")"
        if z.scheduled and z.due is not None:
            line += f"  at {zones.describe(z.due, z.zone)}"
        click.echo(line)


def _transition(action, number: int) -> None:
    try:
        action(number)
    except send.UnknownIssue as exc:
        _fail(str(exc))
    except send.DeliveryError as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(_summary(send.counts_for(number)))


@click.command("pause")
@with_appcontext
@click.argument("number", type=int)
def pause_command(number: int):
    """Pause a send: no new batches; batches on the wire finish."""
    _transition(send.pause_issue, number)


@click.command("resume")
@with_appcontext
@click.argument("number", type=int)
def resume_command(number: int):
    """Resume a paused send (the background sender or `issue send N` continues it)."""
    _transition(lambda n: resume(_settings(), n), number)


@click.command("cancel-send")
@with_appcontext
@click.argument("number", type=int)
@click.option("--yes", is_flag=True)
def cancel_send_command(number: int, yes: bool):
    """Cancel a send: rows not yet sent are skipped with the reason "issue cancelled"."""
    if not yes:
        click.confirm(
            f"Cancel the send of issue {number}? Readers not yet mailed will not get it.", abort=True
        )
    _transition(send.cancel_sending, number)


@click.command("test")
@with_appcontext
@click.argument("number", type=int)
@click.argument("addresses", nargs=-1, required=True)
@click.option("--topics", default=None, help="Comma-separated sections, to test a variant.")
def test_command(number: int, addresses: tuple[str, ...], topics: str | None):
    """Send issue NUMBER to ADDRESSES as a test ([TEST] subject, no delivery records)."""
    try:
        results = send_test(_settings(), number, list(addresses), topics=topics)
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    bad = 0
    for address, result in zip(addresses, results, strict=True):
        click.echo(f"{address}: {result.status}{' — ' + result.error if result.error else ''}")
        bad += not result.ok
    sys.exit(EXIT_FAILED if bad else 0)


@click.command("worker")
@with_appcontext
@click.option(
    "--threads", type=int, default=None, help="Actor threads (default NEWSLETTER_SEND_CONCURRENCY)."
)
def worker_command(threads: int | None):
    """Send through Dramatiq: consume NEWSLETTER_BROKER_URL (Redis or RabbitMQ) until stopped."""
    settings = _settings()
    if not settings.broker_url:
        _fail("set NEWSLETTER_BROKER_URL (redis://… or amqp://…) to run workers", EXIT_USAGE)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(
        f"worker: consuming {settings.broker_url.split('@')[-1]}, {threads or settings.send_concurrency} threads"
    )
    run_worker(settings, threads=threads, stop=stop)


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (
        send_command,
        status_command,
        pause_command,
        resume_command,
        cancel_send_command,
        test_command,
    ):
        groups["issue"].add_command(command)
    # ``newsletter worker`` is top level: every value of ``groups`` is added to the CLI.
    groups["worker"] = worker_command
