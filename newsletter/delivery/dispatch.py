"""The dispatch loop: claim, send and record batches until nothing is left.

``dispatch`` is one sender (a thread); ``run_pool`` runs enough of them to
keep ``NEWSLETTER_SEND_CONCURRENCY`` connections busy (one a connection for
an HTTP API, one for every two SMTP connections), sharing one transport (the
SMTP pool or HTTP session) and one rate limiter. The same ``dispatch`` runs
in every way a send can run: in these threads, in sending processes
(``processes``) and in Dramatiq actors (``worker``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from newsletter.config import Settings
from newsletter.delivery import journal, outcomes, queue
from newsletter.delivery.batch import DispatchStats, Renders, process_batch
from newsletter.delivery.ratelimit import NoLimit, make_limiter
from newsletter.delivery.send import pause_issue_by_id, resume_unfinished, take_over_fan_outs
from newsletter.delivery.transports import make_transport
from newsletter.delivery.transports.base import TransportError, senders_for
from newsletter.issues import states

log = logging.getLogger(__name__)

MAX_BATCH = 500
# A sending loop's first batch is this small, the rest full: a batch is built
# (and DKIM-signed) whole before its first message goes on the wire, so a
# full first batch kept every connection idle while 200 messages were built
# and signed (docs/performance.md, "The eleventh session").
FIRST_BATCH = 10


def can_fork() -> bool:
    """Whether this process may fork its senders: no other thread runs (a
    lock another thread held at the fork would stay locked in the child).
    ``issue send`` can; serve and the scheduler cannot."""
    return threading.active_count() == 1


def batch_size(settings: Settings, transport) -> int:
    size = min(getattr(transport, "max_batch", 100), MAX_BATCH)
    if settings.send_rate:
        size = min(size, max(1, int(settings.send_rate)))  # at most one second's worth per batch
    return max(1, size)


def _idle_wait(settings: Settings, issue_id: int | None, due: float | None, idle_rounds: int) -> float:
    """How long a sender with nothing to claim sleeps.

    Rows on the wire in other threads (a send's last batches finish within
    milliseconds): look again soon, then less and less often, at most once a
    second. Nothing on the wire and the next row due later (local-time
    delivery's next wave, a retry's backoff): sleep until it is due — one
    wake-up per wave, not a poll — but at most
    NEWSLETTER_SEND_WAVE_RECHECK_SECONDS (60), so a pause or cancel from
    another process, or a lease to reclaim, is seen within that time."""
    soon = 0.02 * 2 ** min(idle_rounds + 1, 6)
    if due is None or due <= 1.0 or queue.in_flight(issue_id):
        return max(0.01, min(1.0, soon, due if due is not None else 1.0))
    return min(due, max(0.05, settings.send_wave_recheck_seconds))


def dispatch(
    settings: Settings,
    *,
    issue_id: int | None = None,
    worker_id: str,
    stop: threading.Event | None = None,
    transport=None,
    limiter=None,
    wait: bool = True,
    on_batch: Callable[[DispatchStats], None] | None = None,
    max_seconds: float | None = None,
    renders: Renders | None = None,
) -> DispatchStats:
    """Claim, send and record batches until nothing is left (or ``stop``).

    ``wait=False`` returns as soon as nothing is due now (tests move the
    clock instead of sleeping); ``max_seconds`` bounds one call (worker mode
    re-enqueues itself). Stops claiming when the issue is paused or cancelled.
    """
    stop = stop or threading.Event()
    own_transport = transport is None
    transport = transport or make_transport(settings.transport, settings)
    limiter = limiter or NoLimit()
    renders = renders or Renders(settings)
    stats = DispatchStats()
    size = batch_size(settings, transport)
    started = time.monotonic()
    failures = 0
    idle_rounds = 0
    try:
        with queue.Heartbeat(settings, worker_id, stop), journal.kept(settings, worker_id) as wire:
            while not stop.is_set():
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    stats.stopped_because = "time"
                    break
                rows = queue.claim_batch(
                    settings, worker_id, size if stats.batches else min(size, FIRST_BATCH), issue_id
                )
                if not rows:
                    if issue_id is not None and queue.issue_status(issue_id) != states.SENDING:
                        stats.stopped_because = queue.issue_status(issue_id) or "gone"
                        break
                    if queue.reclaim_expired_leases(settings, issue_id) or take_over_fan_outs(issue_id):
                        continue
                    if not queue.open_rows(issue_id):
                        stats.stopped_because = "done"
                        break
                    due = queue.next_due_in(issue_id)
                    pause = _idle_wait(settings, issue_id, due, idle_rounds)
                    if not wait or (
                        max_seconds is not None and time.monotonic() - started + pause > max_seconds
                    ):
                        # a slice of worker mode does not sleep through a wave's wait: it
                        # hands back (the worker re-enqueues itself for when it is due)
                        stats.stopped_because, stats.wake_in = "waiting", due
                        break
                    if pause > 1.0 and issue_id is None:
                        resume_unfinished(settings)  # a send whose last wave is done is finished now
                    queue.idle(stop, pause)
                    idle_rounds += 1
                    continue
                idle_rounds = 0
                try:
                    batch = process_batch(settings, transport, rows, renders, limiter, stop, wire)
                    failures = 0
                except TransportError as exc:
                    failures += 1
                    stats.errors.append(str(exc))
                    if exc.fatal:
                        pause_issue_by_id(rows[0].issue_id, reason=str(exc))
                        stats.stopped_because = f"paused: {exc}"
                        break
                    pause = exc.retry_after if exc.retry_after is not None else min(60.0, 2.0**failures)
                    log.warning("transport: %s; waiting %.1fs", exc, pause)
                    if not wait:
                        stats.stopped_because = "waiting"
                        break
                    stop.wait(pause)
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug or a database hiccup: give the rows back
                    failures += 1
                    log.exception("batch failed")
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
                    try:
                        outcomes.release(
                            rows,
                            retry_after=settings.retry_base_seconds,
                            charge=True,
                            error=f"internal error: {exc}",
                        )
                    except Exception:  # noqa: BLE001 - the lease will expire and reclaim them
                        log.exception("cannot release the batch")
                    if failures >= 5:
                        stats.stopped_because = f"error: {exc}"
                        break
                    stop.wait(min(30.0, 2.0**failures))
                    continue
                stats.add(batch)
                if on_batch is not None:
                    on_batch(batch)
    finally:
        if own_transport:
            transport.close()
    return stats


def run_pool(
    settings: Settings,
    issue_id: int | None,
    *,
    stop: threading.Event | None = None,
    on_batch: Callable[[DispatchStats], None] | None = None,
    transport=None,
    limiter=None,
    wait: bool = True,
    renders: Renders | None = None,
    on_started: Callable[[], None] | None = None,
) -> DispatchStats:
    """Dispatch loops in threads sharing one transport (``send_concurrency``
    of them, or one for every ``lanes`` connections of an SMTP transport),
    one rate limiter and one set of renders (read from the database once, or
    ``renders`` prepared by the caller); returns their totals. ``on_started``
    is called once the loops are running."""
    stop = stop or threading.Event()
    own = transport is None
    transport = transport or make_transport(settings.transport, settings)
    limiter = limiter or make_limiter(settings)
    renders = renders or Renders(settings)
    total = DispatchStats()
    lock = threading.Lock()

    def counted(batch: DispatchStats) -> None:
        with lock:
            if on_batch is not None:
                on_batch(batch)

    try:
        senders = senders_for(settings.send_concurrency, transport)
        with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="sender") as pool:
            futures = [
                pool.submit(
                    dispatch,
                    settings,
                    issue_id=issue_id,
                    worker_id=queue.worker_name(str(n)),
                    stop=stop,
                    transport=transport,
                    limiter=limiter,
                    wait=wait,
                    on_batch=counted,
                    renders=renders,
                )
                for n in range(senders)
            ]
            try:
                if on_started is not None:
                    on_started()
                for future in futures:
                    result = future.result()
                    total.add(result)
                    total.errors += result.errors
                    total.stopped_because = total.stopped_because or result.stopped_because
            except BaseException:
                stop.set()  # Ctrl-C or a crash in one loop: let the others finish their batch and stop
                raise
    finally:
        if own:
            transport.close()
    return total
