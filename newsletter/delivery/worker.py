"""Worker mode: the same ``dispatch`` as Dramatiq actors over Redis or
RabbitMQ (``NEWSLETTER_BROKER_URL``), for installations that outgrow one
machine. Use PostgreSQL: claims are ``FOR UPDATE SKIP LOCKED`` so any number
of workers share the queue without stepping on each other.

``enqueue_send`` puts ``send_concurrency`` messages for an issue on the
broker; each actor run dispatches for at most ``SLICE_SECONDS`` and then
re-enqueues itself while rows remain, so a long send is many short,
retryable jobs and a killed worker loses nothing (Dramatiq redelivers its
message; the rows it held come back when their lease expires). The last run
to find nothing open finishes the issue. The send rate is one Redis token
bucket shared by every worker.
"""

from __future__ import annotations

import importlib
import logging
import threading

import dramatiq
from dramatiq import Worker

from newsletter.config import Settings
from newsletter.delivery import mailqueue, queue
from newsletter.delivery.dispatch import dispatch
from newsletter.delivery.ratelimit import make_limiter
from newsletter.delivery.send import finish_issue, issue_id_for, resume_unfinished
from newsletter.delivery.transports import make_transport

log = logging.getLogger(__name__)

SLICE_SECONDS = 30.0
ACTOR_NAME = "newsletter.dispatch_issue"
QUEUE = "newsletter"


# The broker's module is imported only when a broker is used (as transports are by
# their scheme): its client library (redis, pika) costs a quarter of a second to
# import, which every `issue send` and sending process would pay for nothing.
BROKERS = {
    ("redis://", "rediss://", "unix://"): ("dramatiq.brokers.redis", "RedisBroker"),
    ("amqp://", "amqps://"): ("dramatiq.brokers.rabbitmq", "RabbitmqBroker"),
}


def make_broker(url: str):
    for prefixes, (module, name) in BROKERS.items():
        if url.startswith(prefixes):
            return getattr(importlib.import_module(module), name)(url=url)
    raise ValueError(f"NEWSLETTER_BROKER_URL must be redis://… or amqp://…, not {url!r}")


class Sender:
    """The broker, the actor and the per-process transport and rate limiter."""

    def __init__(self, settings: Settings, broker=None):
        self.settings = settings
        self.broker = broker or make_broker(settings.broker_url)
        dramatiq.set_broker(self.broker)
        self.stop = threading.Event()
        self._transport = None
        self._lock = threading.Lock()
        self.limiter = make_limiter(settings, shared=True)
        self.actor = dramatiq.actor(
            self._dispatch_issue,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=QUEUE,
            max_retries=20,
            min_backoff=1000,
            time_limit=int((SLICE_SECONDS + 600) * 1000),
        )

    def transport(self):
        with self._lock:
            if self._transport is None:
                self._transport = make_transport(self.settings.transport, self.settings)
            return self._transport

    def _dispatch_issue(self, issue_id: int, slot: int = 0) -> None:
        stats = dispatch(
            self.settings,
            issue_id=issue_id,
            worker_id=queue.worker_name(f"dq{slot}"),
            stop=self.stop,
            transport=self.transport(),
            limiter=self.limiter,
            wait=True,
            max_seconds=SLICE_SECONDS,
        )
        if stats.stopped_because == "done":
            finish_issue(issue_id)
        elif stats.stopped_because == "waiting" and stats.wake_in and not self.stop.is_set():
            # local-time delivery's next wave (or a retry's backoff): a delayed
            # message, so no worker thread is held while nothing is due
            delay = min(stats.wake_in, self.settings.send_wave_recheck_seconds)
            self.actor.send_with_options(args=(issue_id, slot), delay=int(delay * 1000))
        elif stats.stopped_because in ("time", "waiting") or self.stop.is_set():
            self.actor.send(issue_id, slot)  # continue in a fresh job
        log.info("issue id %s slot %s: %s (%s sent)", issue_id, slot, stats.stopped_because, stats.sent)

    def enqueue_send(self, issue_id: int) -> None:
        for slot in range(self.settings.send_concurrency):
            self.actor.send(issue_id, slot)

    def close(self) -> None:
        self.stop.set()
        if self._transport is not None:
            self._transport.close()


_sender: Sender | None = None


def get_sender(settings: Settings, broker=None) -> Sender:
    global _sender
    if _sender is None or _sender.settings is not settings:
        _sender = Sender(settings, broker)
    return _sender


def run_worker(
    settings: Settings, *, threads: int | None = None, stop: threading.Event | None = None, broker=None
) -> None:
    """``newsletter worker``: consume until ``stop`` (SIGINT/SIGTERM in the CLI).
    Each worker also drains the transactional mail queue (``mailqueue``), at
    the shared send rate."""
    sender = get_sender(settings, broker)
    worker = Worker(sender.broker, queues={QUEUE}, worker_threads=threads or settings.send_concurrency)
    worker.start()
    mail = mailqueue.MailSender(settings, limiter=sender.limiter).start()
    try:
        for number in resume_unfinished(settings):
            sender.enqueue_send(issue_id_for(number))
        (stop or threading.Event()).wait()
    finally:
        sender.stop.set()
        mail.shutdown()
        worker.stop()
        sender.close()
