"""The in-process sender of ``newsletter serve``.

A daemon thread that, on start, resumes what a previous process left
unfinished (expired leases back in the queue, issues still ``sending``),
then keeps watching for issues in ``sending`` — started by the scheduler,
the editor, or resumed after a pause — and runs the dispatch pool on them
until each is done. When ``NEWSLETTER_BROKER_URL`` is set the Dramatiq
workers send instead and this thread stays idle.
"""

from __future__ import annotations

import logging
import threading

from newsletter.config import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class Runner:
    def __init__(self, settings: Settings, *, poll: float = POLL_SECONDS):
        self.settings = settings
        self.poll = poll
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> Runner:
        self.thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)

    def tick(self) -> int:
        """One pass: dispatch every issue that is sending; returns messages sent."""
        from newsletter.delivery import pipeline

        sent = 0
        for number in pipeline.resume_unfinished(self.settings):
            if self.stop.is_set():
                break
            counts = pipeline.counts_for(self.settings, number)
            with_id = pipeline.issue_id_for(number)
            stats = pipeline.run_pool(self.settings, with_id, stop=self.stop)
            pipeline.finish_issue(self.settings, with_id)
            sent += stats.sent
            log.info(
                "issue %s: %s sent, %s failed, %s skipped (was %s)",
                number,
                stats.sent,
                stats.failed,
                stats.skipped,
                counts,
            )
        return sent

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep the sender alive; the next tick retries
                log.exception("sender tick failed")
            self.stop.wait(self.poll)


_runner: Runner | None = None


def start_in_process(app) -> Runner | None:
    """Start the background sender thread (dispatches issues in `sending`)."""
    global _runner
    settings = app.extensions["signal_settings"]
    if settings.broker_url:
        log.info("NEWSLETTER_BROKER_URL is set: `newsletter worker` processes send")
        return None
    if _runner is None or not _runner.thread.is_alive():
        _runner = Runner(settings).start()
    return _runner
