"""The in-process senders of ``newsletter serve``.

Transactional mail (confirmations, welcomes, notices) has its own thread
(``mailqueue.MailSender``), so a long issue send never holds it up. The
issue sender is a daemon thread that, on start, resumes what a previous process left
unfinished (expired leases back in the queue, issues still ``sending``),
then keeps watching for issues in ``sending`` — started by the scheduler,
the editor, or resumed after a pause — and sends them (``deliver.run_senders``)
until each is done. When ``NEWSLETTER_BROKER_URL`` is set the Dramatiq
workers send instead and this thread is not started.
"""

from __future__ import annotations

import atexit
import logging
import threading

from newsletter.config import Settings
from newsletter.delivery import mailqueue, queue
from newsletter.delivery.deliver import run_senders
from newsletter.delivery.processes import start_forkserver
from newsletter.delivery.send import finish_issue, issue_id_for, resume_unfinished

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class Runner:
    """The issue sender thread. ``active``, when given, is asked before each
    pass: ``newsletter scheduler`` sends only while it holds the
    single-runner lock, so standing-by schedulers do not add connections."""

    def __init__(self, settings: Settings, *, poll: float = POLL_SECONDS, active=None):
        self.settings = settings
        self.poll = poll
        self.active = active
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> Runner:
        start_forkserver(self.settings)  # (NEWSLETTER_SEND_PROCESSES above 1 only)
        self.thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)

    def tick(self) -> int:
        """One pass: send every issue that is sending, side by side, until
        none has an open row; returns messages sent. One pool serves them
        all, so a local-time send waiting hours for its next wave never holds
        up another issue (a send started in this process wakes the idle
        senders; one started elsewhere is seen within
        NEWSLETTER_SEND_WAVE_RECHECK_SECONDS), and each issue is finished
        as soon as its own last row is done."""
        if self.active is not None and not self.active():
            return 0
        sending = resume_unfinished(self.settings)
        if not sending or self.stop.is_set():
            return 0
        stats = run_senders(self.settings, None, stop=self.stop)
        for number in sending:
            finish_issue(issue_id_for(number))
        resume_unfinished(self.settings)
        log.info(
            "issues %s: %s sent, %s failed, %s skipped",
            ", ".join(map(str, sending)),
            stats.sent,
            stats.failed,
            stats.skipped,
        )
        return stats.sent

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep the sender alive; the next tick retries
                log.exception("sender tick failed")
            # Woken at once by a send started in this process (the editor's
            # "send now", the scheduler's tick, the API); one started elsewhere
            # is seen at the next look, ``poll`` seconds on.
            queue.idle(self.stop, self.poll)


_runner: Runner | None = None


def start_in_process(settings: Settings) -> Runner | None:
    """Start the background sender threads (issues in `sending`, and transactional mail)."""
    global _runner
    if settings.broker_url:
        log.info("NEWSLETTER_BROKER_URL is set: `newsletter worker` processes send")
        return None
    mailqueue.start_sender(settings)
    if _runner is None or not _runner.thread.is_alive():
        _runner = Runner(settings).start()
        atexit.register(_runner.shutdown)  # at exit the batch on the wire is finished and recorded
    return _runner
