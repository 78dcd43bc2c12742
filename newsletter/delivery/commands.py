"""CLI of the delivery engine: ``issue send|status|pause|resume|cancel-send|test``
and ``worker``. Thin faces over ``delivery.deliver`` and ``delivery.send``;
``issue send`` itself is ``send_cli.run_send`` (also run without the web app).

Exit codes: 0 all delivered (or skipped with a reason); 1 some messages
failed, or the issue is unknown; 2 usage/configuration; 3 the send stopped
before the end (paused, cancelled, interrupted) — run it again to continue.
"""

from __future__ import annotations

import signal
import sys
import threading

import click
from flask.cli import with_appcontext

from newsletter import zones
from newsletter.delivery import send
from newsletter.delivery.deliver import resume
from newsletter.delivery.send_cli import EXIT_FAILED, EXIT_USAGE, fail, print_failures, run_send, summary
from newsletter.delivery.testsend import send_test
from newsletter.delivery.worker import run_worker
from newsletter.extensions import settings as _settings


@click.command("send")
@with_appcontext
@click.argument("number", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def send_command(number: int, yes: bool):
    """Send issue NUMBER now and wait: progress bar, non-zero exit if anything failed.

    Running it again continues an interrupted or crashed send; nobody gets the issue twice.
    """
    run_send(_settings(), number, yes)


@click.command("status")
@with_appcontext
@click.argument("number", type=int)
def status_command(number: int):
    """Where the send of issue NUMBER stands (exit 1 if there is no such issue)."""
    try:
        counts = send.counts_for(number)
    except send.UnknownIssue as exc:
        fail(str(exc))
    click.echo(summary(counts))
    if counts.failed:
        print_failures(number)
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
        fail(str(exc))
    except send.DeliveryError as exc:
        fail(str(exc), EXIT_USAGE)
    click.echo(summary(send.counts_for(number)))


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
        fail(str(exc))
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
        fail("set NEWSLETTER_BROKER_URL (redis://… or amqp://…) to run workers", EXIT_USAGE)
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
