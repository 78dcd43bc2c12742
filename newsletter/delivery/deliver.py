"""``deliver()``: the one way a send starts, whoever asks.

The CLI (``issue send``), the editor's "send now" and the scheduler all call
``deliver``. It starts the send (or finds it already started), then the
rows go out in one of four ways, side by side in docs/architecture.md:

- with ``NEWSLETTER_BROKER_URL``, Dramatiq workers send (``worker``);
- with ``here``, this process sends now and returns when the send is done,
  paused or cancelled: threads (``dispatch.run_pool``), or in several
  processes (``processes``; how many: ``sending_processes``);
- otherwise the process's background sender picks it up: ``serve``'s
  sender thread (``runner``) or the scheduler's resume job.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.delivery.batch import DispatchStats
from newsletter.delivery.dispatch import can_fork, run_pool
from newsletter.delivery.queue import reclaim_expired_leases
from newsletter.delivery.send import (
    AlreadySending,
    IssueCounts,
    complete_fan_out,
    counts_for,
    finish_issue,
    resume_issue,
    start_send,
)
from newsletter.issues import states
from newsletter.issues.service import require_issue

Progress = Callable[[IssueCounts, DispatchStats], None]

# A send this process sends itself starts on its first readers' rows while
# the fan-out adds the rest (``send.complete_fan_out``): enough rows to keep
# the senders busy until the fan-out's next part commits (a part of 20,000
# readers takes 20-80 ms; this many messages take about a quarter second).
FIRST_FAN_OUT_ROWS = 2_000


def sending_processes(settings: Settings) -> int:
    """How many processes send: ``NEWSLETTER_SEND_PROCESSES`` when set; unset
    (0), one per core where this process can fork them — a caller with no
    other thread, as ``issue send`` is — and one in a threaded process
    (``serve``, the scheduler), whose children would come from a forkserver
    and import and read everything again (docs/performance.md § "The send a
    user runs" has the figures behind this default)."""
    if settings.send_processes:
        return settings.send_processes
    return (os.cpu_count() or 1) if can_fork() else 1


def run_senders(
    settings: Settings,
    issue_id: int | None,
    *,
    stop: threading.Event | None = None,
    on_batch: Callable[[DispatchStats], None] | None = None,
    transport=None,
    wait: bool = True,
    on_started: Callable[[], None] | None = None,
) -> DispatchStats:
    """Send the rows of ``issue_id`` (or of every sending issue) in this
    process: threads, or ``send_processes`` processes (not with a transport
    passed in, which cannot cross a process boundary). ``on_started`` runs
    once the senders exist: a caller that shows progress starts its display
    there, so its thread never stops the sending processes from forking."""
    stop = stop or threading.Event()
    processes = sending_processes(settings)
    if processes > 1 and transport is None:
        from newsletter.delivery.processes import run_processes  # (multiprocessing: only when used)

        return run_processes(
            replace(settings, send_processes=processes),
            issue_id,
            stop=stop,
            on_batch=on_batch,
            wait=wait,
            on_started=on_started,
        )
    return run_pool(
        settings,
        issue_id,
        stop=stop,
        on_batch=on_batch,
        transport=transport,
        wait=wait,
        on_started=on_started,
    )


def deliver(
    settings: Settings,
    number: int,
    *,
    here: bool,
    continue_started: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    transport=None,
    local_slot: datetime | None = None,
) -> IssueCounts:
    """Start (or, with ``continue_started``, continue) sending issue ``number``;
    returns its counts (final ones when this process sent it). Raises
    ``NotSendable`` for an issue that is not approved, scheduled or sending,
    ``AlreadySending`` for a paused one (or a started one when not continuing).
    ``local_slot``: the scheduler's weekly slot in local-time mode (each
    reader at its wall-clock time in their zone); otherwise everyone now."""
    sends_here = here and not settings.broker_url
    try:
        issue = start_send(
            settings, number, local_slot=local_slot, first_rows=FIRST_FAN_OUT_ROWS if sends_here else None
        )
        started = True
    except AlreadySending:
        with session_scope() as session:
            issue = require_issue(session, number)
        if issue.status == states.PAUSED or not continue_started:
            raise
        started = False
    if settings.broker_url:
        _enqueue(settings, issue.id)
        return counts_for(number)
    if not here:
        return counts_for(number)
    fanning_out = started and issue.fanning_out_until is not None
    if started:  # every row was just added, pending: no lease to reclaim, nothing to count
        # (while the fan-out goes on, the total is not known yet: 0)
        start = IssueCounts(
            number, states.SENDING, pending=issue.recipients, total=0 if fanning_out else issue.recipients
        )
    else:  # continuing: a crashed sender's rows go back to the queue first
        reclaim_expired_leases(settings, issue.id)
        start = counts_for(number)

    def senders_started() -> None:
        """The display first, then (in this thread, while the senders send)
        the rest of the fan-out, then the display learns the total."""
        if progress is not None:
            progress(start, DispatchStats())
        if fanning_out:
            recipients = complete_fan_out(issue.id, stop=stop)
            if progress is not None and recipients is not None:
                progress(replace(start, total=recipients), DispatchStats())

    stats = run_senders(
        settings,
        issue.id,
        stop=stop,
        transport=transport,
        on_batch=(lambda batch: progress(start, batch)) if progress is not None else None,
        on_started=senders_started,
    )
    finish_issue(issue.id)
    final = counts_for(number)
    final.errors = stats.errors
    return final


def resume(settings: Settings, number: int):
    """paused → sending, and the rows back to whoever sends (the workers get
    the send again; ``serve``'s thread and ``issue send`` find it sending)."""
    issue = resume_issue(number)
    if settings.broker_url:
        _enqueue(settings, issue.id)
    return issue


def _enqueue(settings: Settings, issue_id: int) -> None:
    """Hand the send to the Dramatiq workers. Dramatiq and its broker client
    are imported here, only in scale-out mode: a send in this process does
    not wait for them."""
    from newsletter.delivery import worker

    worker.get_sender(settings).enqueue_send(issue_id)
