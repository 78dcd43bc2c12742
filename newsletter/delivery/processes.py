"""``NEWSLETTER_SEND_PROCESSES``: the in-process sender in N processes.

One Python process sends on one core at a time: personalising, building
MIME, the SMTP client and the database work all hold the GIL (only
OpenSSL's RSA for DKIM and socket waits release it), so more threads do not
make a single sender faster. The claim/lease design already lets several
workers share a queue safely, so this runs ``dispatch.run_pool`` in N
processes — the calling one and N − 1 children — each with its own
interpreter, database connections, SMTP pool and leases; nothing else
changes (a process that dies leaves rows whose leases expire and are
reclaimed, exactly as for a crashed thread). The caller sends a share
itself rather than only waiting for its children: one process's memory
less for the same number of senders.

``NEWSLETTER_SEND_CONCURRENCY`` stays the total number of connections (and
threads): it is split over the processes, so a mail server sees the same
number of sessions whatever N is. ``NEWSLETTER_SEND_RATE`` is split the same
way (each process gets its share of the token bucket).

A single-threaded parent (``newsletter issue send``, the benchmarks) forks:
the children start in milliseconds with everything imported, the issue's
renders already read and prepared for substitution (``Renders.prepared``,
done once in the parent) and the DKIM key loaded, and drop the inherited
database pool without closing it. So the caller must start nothing that
runs a thread — rich's progress bar does — until ``on_started`` says the
children exist. A parent that runs other threads (the web app's background
sender, the scheduler) never forks — a lock held by another thread would
stay locked in the child — it uses a ``forkserver`` that has imported the
sender (and DKIM's code, when a key is set) once, and each child reads the
renders (and loads the DKIM key) itself.

Children ignore Ctrl-C and stop when the parent's ``stop`` event is set,
after finishing their batch. They also stop, the same way, when the parent
dies (``PR_SET_PDEATHSIG`` on Linux, and a watchdog on the parent's pid
everywhere): a killed ``issue send`` leaves no sender behind.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, replace

from newsletter import db
from newsletter.config import Settings
from newsletter.delivery.batch import DispatchStats, Renders
from newsletter.delivery.dispatch import can_fork, run_pool
from newsletter.delivery.transports.base import dkim_signer

log = logging.getLogger(__name__)


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into at most ``parts`` near-equal positive shares."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def child_settings(settings: Settings) -> list[Settings]:
    """The settings of each sender process (their concurrency and rate add up to the parent's)."""
    out = []
    for threads in shares(settings.send_concurrency, settings.send_processes):
        rate = settings.send_rate * threads / settings.send_concurrency if settings.send_rate else 0.0
        out.append(replace(settings, send_processes=1, send_concurrency=threads, send_rate=rate))
    return out


def run_processes(
    settings: Settings,
    issue_id: int | None,
    *,
    stop: threading.Event,
    on_batch: Callable | None = None,
    wait: bool = True,
    on_started: Callable[[], None] | None = None,
):
    """Like ``dispatch.run_pool`` (same arguments, same totals), in this
    process and ``send_processes`` − 1 children. ``on_started`` is called
    once every sender runs: a forking caller starts no thread until every
    child exists, then its own senders, then ``on_started`` (a threaded
    caller's senders start before its children, see below)."""
    context = _context(settings)
    forked = context.get_start_method() == "fork"
    # Read and prepared once, here; forked children inherit them: the issue's
    # renders, and the DKIM key with DKIM's code (dkimpy and the RSA bindings,
    # then OpenSSL's check of the key: 0.1 s a process).
    renders = Renders.prepared(settings, issue_id) if forked and issue_id is not None else None
    if forked:
        dkim_signer(settings)
    child_stop = context.Event()
    reports = context.Queue()
    parent = os.getpid()
    # This process sends the first share itself: N processes in all, not N
    # children beside a parent that only waits (one process's memory less).
    own_share, *shares_of_children = child_settings(settings)
    processes = [
        context.Process(
            target=_child,
            args=(child, issue_id, wait, child_stop, reports, renders, parent if forked else None),
            name=f"sender-{n}",
            daemon=True,
        )
        for n, child in enumerate(shares_of_children, start=1)
    ]
    reported = threading.Lock()  # this process's senders and the children's reports both call on_batch

    def counted(batch: DispatchStats) -> None:
        if on_batch is not None:
            with reported:
                on_batch(batch)

    start_own = functools.partial(_OwnShare, own_share, issue_id, stop, counted, wait, renders)
    # A threaded caller (serve, the scheduler) sends its share first: it never
    # waits for the forkserver to fork the others, which it does only once it
    # has imported the sender (half a second or more when a send comes just
    # after the process started). A forking caller starts no thread before it forks.
    own = None if forked else start_own()
    # Objects that live until the end (modules, the renders) stay out of the
    # collector's reach, so the children never touch (and so copy) their pages.
    # Only what this call froze is let go after: what the entry point froze
    # (``newsletter.__main__.collector_paused``) stays frozen in this process.
    unfreeze_after = forked and gc.get_freeze_count() == 0
    if forked:
        gc.freeze()
    try:
        for process in processes:
            process.start()
    except BaseException:
        if own is not None:  # no child to share with: this process's senders stop too
            stop.set()
            own.thread.join()
        raise
    finally:
        if unfreeze_after:
            gc.unfreeze()
    own = own or start_own()
    total = DispatchStats()
    finished: set[str] = set()
    try:
        if on_started is not None:
            on_started()  # after this process's senders start: a progress display's imports delay none
        while len(finished) < len(processes):
            if stop.is_set():
                child_stop.set()
            try:
                kind, name, values = reports.get(timeout=0.2)
            except queue.Empty:
                for process in processes:
                    if process.name not in finished and not process.is_alive():
                        # It died without reporting (killed, or crashed at import):
                        # its leases expire and another sender takes its rows over.
                        finished.add(process.name)
                        total.errors.append(f"{process.name} exited with code {process.exitcode}")
                continue
            stats = DispatchStats(**values)
            if kind == "batch":
                counted(stats)
                continue
            finished.add(name)
            _add(total, stats)
    except BaseException:
        child_stop.set()  # Ctrl-C: children finish their batch and stop
        stop.set()  # and so do this process's senders
        raise
    finally:
        own.thread.join()
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                log.error("%s did not stop; terminating it", process.name)
                process.terminate()
                process.join()
        reports.close()
    _add(total, own.stats)
    return total


def _add(total: DispatchStats, stats: DispatchStats) -> None:
    total.add(stats)
    total.errors += stats.errors
    total.stopped_because = total.stopped_because or stats.stopped_because


class _OwnShare:
    """The calling process's own share of the senders, in a thread while the
    calling thread follows the children's reports."""

    def __init__(self, settings: Settings, issue_id, stop, on_batch, wait: bool, renders):
        self.stats = DispatchStats()
        self.thread = threading.Thread(
            target=self._run, args=(settings, issue_id, stop, on_batch, wait, renders), name="sender-0"
        )
        self.thread.start()

    def _run(self, settings, issue_id, stop, on_batch, wait, renders) -> None:
        try:
            self.stats = run_pool(
                settings, issue_id, stop=stop, on_batch=on_batch, wait=wait, renders=renders
            )
        except Exception as exc:  # noqa: BLE001 - reported with the totals, as a child's failure is
            log.exception("sending failed")
            self.stats = DispatchStats(stopped_because=f"error: {exc}", errors=[f"sender-0: {exc}"])


_PRELOAD = ["newsletter.delivery.processes", "newsletter.delivery.transports"]
_PRELOAD_DKIM = "newsletter.delivery.dkim"


def _context(settings: Settings):
    return multiprocessing.get_context("fork") if can_fork() else _forkserver(settings)


def _forkserver(settings: Settings):
    """The forkserver context, preloading the sender; and DKIM's code
    (dkimpy, the RSA bindings: 50 ms a child otherwise) when a key is set.
    The preload counts only until the server starts: ``start_forkserver``
    starts it with the sender thread, with the settings the sends will use."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD + ([_PRELOAD_DKIM] if settings.dkim_domain else []))
    return context


def start_forkserver(settings: Settings) -> None:
    """Start the forkserver now, when a threaded process (serve, the
    scheduler) starts its sender with ``NEWSLETTER_SEND_PROCESSES`` above 1,
    rather than at its first send: the server imports the sender on the
    other core while this process goes on starting, and the first send's
    children fork from it at once instead of waiting half a second for that
    import (docs/performance.md, "The scheduler's and the editor's sends").
    Unset, such a process sends from itself and starts nothing."""
    if settings.send_processes > 1:
        from multiprocessing import forkserver

        _forkserver(settings)  # (its preload)
        forkserver.ensure_running()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent dies (a no-op elsewhere:
    the watchdog in ``_child`` covers it)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _child(
    settings: Settings,
    issue_id: int | None,
    wait: bool,
    child_stop,
    reports,
    renders: Renders | None = None,
    parent: int | None = None,
) -> None:
    """One sender process: its own engine, transport and dispatch threads."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the batch, then stop
    parent = parent or os.getppid()  # forked: the caller; forkserver: the server
    _die_with_parent()
    if os.getppid() != parent:  # it died before we asked
        return
    name = multiprocessing.current_process().name
    try:  # forked: the parent's pooled connections are the parent's; never touch them
        db.get_engine().dispose(close=False)
    except RuntimeError:  # forkserver: no engine yet
        pass
    db.init_engine(settings.database_url)

    def watch() -> None:
        while not child_stop.wait(0.5):
            if os.getppid() != parent:  # the parent died (no PDEATHSIG here)
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        stats = run_pool(
            settings,
            issue_id,
            stop=stop,
            wait=wait,
            on_batch=lambda batch: reports.put(("batch", name, asdict(batch))),
            renders=renders,
        )
    except Exception as exc:  # noqa: BLE001 - report it; the parent records it with the totals
        log.exception("sender process failed")
        stats = DispatchStats(stopped_because=f"error: {exc}", errors=[f"{name}: {exc}"])
    if os.getppid() != parent:  # nobody reads the reports: do not wait at exit to flush them
        reports.cancel_join_thread()
    reports.put(("done", name, asdict(stats)))
    db.dispose_engine()
