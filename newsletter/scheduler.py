"""APScheduler jobs and the single-runner lock — the public face of scheduling.

The web workers never run jobs. ``newsletter serve`` runs the scheduler in
its one process (``start_in_process``: a BackgroundScheduler);
``newsletter scheduler`` runs it alone in the foreground (a
BlockingScheduler) beside gunicorn. Either way APScheduler only wakes three
interval jobs:

* ``lock`` — take or renew the single-runner lock (scheduling/lock.py);
* ``tick`` — the weekly cycle, decided from the clock and JobRun rows
  (scheduling/jobs.py);
* ``housekeeping`` — resume sends, poll feeds and bounces, retention.

Only the process holding the lock runs ``tick`` and ``housekeeping``; the
others keep trying the lock and take over when the holder dies. The slot
logic does not rely on APScheduler's own cron or misfire handling, so it is
testable with a controlled clock and safe across restarts.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from datetime import UTC, datetime

import click
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import current_app
from flask.cli import with_appcontext

from newsletter import clock
from newsletter.config import ConfigError
from newsletter.db import get_engine
from newsletter.delivery import mailqueue
from newsletter.delivery.runner import Runner as IssueSender
from newsletter.scheduling import jobs, runs, slots
from newsletter.scheduling.lock import RunnerLock, lock_state, make_lock
from newsletter.scheduling.testclock import install_from_env

log = logging.getLogger("newsletter.scheduler")


def check_settings(settings) -> None:
    if settings.scheduler_tick_seconds <= 0:
        raise ConfigError("NEWSLETTER_SCHEDULER_TICK_SECONDS must be more than 0")
    if settings.scheduler_lock_seconds < 3:
        raise ConfigError("NEWSLETTER_SCHEDULER_LOCK_SECONDS must be at least 3")
    if slots.next_slot(settings, clock.now()) is None:
        raise ConfigError(f"NEWSLETTER_SCHEDULE {settings.schedule!r} never fires (no such date)")


class Runner:
    """One scheduler process: the lock and the APScheduler jobs around it."""

    def __init__(self, app, *, blocking: bool, mode: jobs.Mode):

        self.app = app
        self.settings = app.extensions["signal_settings"]
        check_settings(self.settings)
        self.mode = mode
        self.lock: RunnerLock = make_lock(get_engine(), lease_seconds=self.settings.scheduler_lock_seconds)
        cls = BlockingScheduler if blocking else BackgroundScheduler
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run is noise
        self.scheduler = cls(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        heartbeat = max(1.0, self.settings.scheduler_lock_seconds / 3)
        tick = self.settings.scheduler_tick_seconds
        now = datetime.now(UTC)
        self.scheduler.add_job(self.hold, "interval", seconds=heartbeat, id="lock", next_run_time=now)
        self.scheduler.add_job(self.tick, "interval", seconds=tick, id="tick", next_run_time=now)
        self.scheduler.add_job(
            self.housekeeping, "interval", seconds=tick, id="housekeeping", next_run_time=now
        )
        self._stopped = threading.Event()

    @property
    def holder(self) -> str:
        return self.lock.holder

    def hold(self) -> bool:
        return self.lock.try_hold()

    def _guarded(self, name: str, work) -> list[str]:
        if self._stopped.is_set() or not self.lock.held:
            return []
        try:
            with self.app.app_context():
                return work()
        except Exception:  # noqa: BLE001 - logged; the next run tries again
            log.exception("scheduler %s failed", name)
            return []

    def tick(self) -> list[str]:
        return self._guarded("tick", lambda: jobs.tick(self.settings, mode=self.mode))

    def housekeeping(self) -> list[str]:
        return self._guarded("housekeeping", lambda: jobs.housekeeping(self.settings, mode=self.mode))

    def start(self) -> None:
        """Blocking for ``newsletter scheduler``, returns at once otherwise."""
        self.hold()
        log.info(
            "scheduler %s started (%s)", self.holder, "holding the lock" if self.lock.held else "standing by"
        )
        self.scheduler.start()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - not running
            pass
        self.lock.release()
        log.info("scheduler %s stopped", self.holder)


_runner: Runner | None = None


def start_in_process(app) -> Runner:
    """Start the scheduler in the background of ``newsletter serve``; the
    in-process sender of serve dispatches the issues it starts."""

    global _runner
    if _runner is None:
        _runner = Runner(app, blocking=False, mode=jobs.Mode(dispatch=False))
        _runner.start()
        atexit.register(stop_in_process)
    return _runner


def stop_in_process() -> None:
    """Stop the background scheduler and release the lock (at exit, in tests)."""
    global _runner
    if _runner is not None:
        _runner.stop()
        _runner = None


# --- commands ---------------------------------------------------------------------


def _settings():

    settings = current_app.extensions["signal_settings"]
    install_from_env(settings)
    return settings


@click.command("scheduler")
@with_appcontext
def scheduler_command():
    """Run the scheduler alone in the foreground (production: beside gunicorn).

    Start as many as you like: one holds the lock and acts, the others stand
    by and take over within NEWSLETTER_SCHEDULER_LOCK_SECONDS if it dies.
    """
    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        runner = Runner(current_app._get_current_object(), blocking=True, mode=jobs.Mode(dispatch=False))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def on_signal(signum, _frame):
        log.info("signal %s: stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Beside gunicorn, this process sends (unless Dramatiq workers do:
    # NEWSLETTER_BROKER_URL): the transactional mail the web workers queue, and
    # the issues it or the editor starts, in a sender thread of their own. The
    # thread sleeps between local-time waves, so the tick and housekeeping go
    # on while a send lasts (a send in the tick itself would hold them for up
    # to a day); it sends only while this process holds the lock.
    senders = []
    if not settings.broker_url:
        senders = [
            mailqueue.MailSender(settings).start(),
            IssueSender(settings, active=lambda: runner.lock.held).start(),
        ]
    nxt = slots.next_slot(settings, clock.now())
    click.echo(
        f"scheduler {runner.holder}: {settings.schedule} in {settings.timezone}; "
        f"next slot {slots.describe(settings, nxt) if nxt else 'never'}",
        err=True,
    )
    try:
        runner.start()
    finally:
        runner.stop()
        for sender in senders:
            sender.shutdown()


def _every(period) -> str:
    seconds = int(period.total_seconds())
    for one, many, size in (("day", "days", 86400), ("hour", "h", 3600), ("minute", "min", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"every {count} {many}" if count > 1 else f"every {one}"
    return f"every {seconds} s"


def _fmt(moment: datetime | None, settings) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return slots.describe(settings, moment)


@click.command("schedule")
@click.option("--count", default=3, show_default=True, help="How many upcoming slots to show.")
@with_appcontext
def schedule_command(count: int):
    """Show the next runs (local time and UTC), the state of each job and of the lock."""

    settings = _settings()
    now = clock.now()
    echo = click.echo
    echo(f"Schedule   {settings.schedule!r} in {settings.timezone}")
    echo(
        f"           review {settings.review_hours} h before the slot · auto-send {'on' if settings.auto_send else 'off'}"
        f" · misfire grace {settings.misfire_grace_hours} h · tick every {settings.scheduler_tick_seconds:g} s"
    )
    echo(f"Now        {_fmt(now, settings)}")
    echo("")
    echo("Next slots")
    upcoming = slots.upcoming(settings, now, count)
    if not upcoming:
        echo("  none: the cron expression never fires again")
    for slot in upcoming:
        local = slots.local(settings, slot)
        review = slots.review_at(settings, slots.first_moment(settings, slot))
        echo(
            f"  {local:%a %Y-%m-%d %H:%M %Z}  = {slot:%Y-%m-%d %H:%M} UTC   review from "
            f"{slots.local(settings, review):%a %Y-%m-%d %H:%M %Z} = {review:%Y-%m-%d %H:%M} UTC"
        )
        if settings.local_time_delivery:
            echo(f"      local-time delivery: {slots.describe_send(settings, slot)}")
    timed = jobs.scheduled_issues()
    if timed:
        echo("")
        echo("Issues scheduled for a time")
        for number, when in timed:
            echo(f"  Issue {number:03d}  {_fmt(when, settings)}")
    echo("")
    echo("Jobs")
    nxt = upcoming[0] if upcoming else None
    weekly = {
        jobs.REVIEW: (
            "assemble the draft, mail the editors a preview link",
            slots.review_at(settings, nxt) if nxt and settings.review_hours > 0 else None,
        ),
        jobs.SEND: ("send if approved or auto-send; else wait and tell the editors", nxt),
    }
    for name, (what, due) in weekly.items():
        last = runs.last_run(name)
        echo(f"  {name:<11} {what}")
        echo(f"  {'':<11} next: {_fmt(due, settings) if due else 'at the slot itself (review hours 0)'}")
        if last:
            echo(f"  {'':<11} last: slot {_fmt(last.slot_at, settings)} — {last.state}: {last.detail}")
        else:
            echo(f"  {'':<11} last: never")
    for job in jobs.PERIODIC:
        period = job.period(settings)
        last = runs.last_run(job.name)
        every = _every(period) if period else "off"
        echo(f"  {job.name:<11} {job.description} ({every})")
        if period:
            echo(
                f"  {'':<11} last: "
                + (f"{_fmt(last.created_at, settings)} — {last.state}: {last.detail}" if last else "never")
            )
    echo("")
    state = lock_state(get_engine())
    if state.get("holder"):
        held = "held" if state["held"] else "NOT held (holder gone; the next scheduler to look takes it)"
        echo(f"Lock       {state['kind']}: {held} by {state['holder']}")
        echo(
            f"           since {_fmt(state['acquired_at'], settings)}; heartbeat {_fmt(state['heartbeat_at'], settings)}"
            + (f"; backend pid {state['backend_pid']}" if state.get("backend_pid") else "")
            + (
                f"; lease until {_fmt(state['expires_at'], settings)}"
                if state["kind"].startswith("sqlite")
                else ""
            )
        )
    else:
        echo(f"Lock       {state['kind']}: free (no scheduler running)")


def register(groups) -> None:
    """Add ``schedule`` and ``scheduler`` to the CLI."""
    # Top level: every value of ``groups`` is added to the CLI.
    groups["scheduler"] = scheduler_command
    groups["schedule"] = schedule_command
