"""Worker mode: Dramatiq actors over Redis send an issue started by
`issue send` (the CLI follows the counts while the workers send)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from newsletter.db import init_engine
from newsletter.delivery import send
from tests.delivery_fixtures import add_subscribers, issue_row, make_issue
from tests.helpers import require

REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def redis_broker():
    import redis
    from dramatiq.brokers.redis import RedisBroker

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.ConnectionError:
        require(False, "Redis is not running on 127.0.0.1:6379")
    broker = RedisBroker(url=REDIS, namespace=f"gts-test-{uuid.uuid4().hex[:8]}")
    yield broker
    broker.flush_all()
    broker.close()


def test_dramatiq_workers_send_every_message_once(make_settings, smtp_server, redis_broker):
    from newsletter.delivery import worker

    settings = make_settings(
        transport=smtp_server.dsn, broker_url=REDIS, redis_url=REDIS, send_concurrency=3, send_rate=500
    )
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 120)
    stop = threading.Event()
    thread = threading.Thread(
        target=worker.run_worker,
        args=(settings,),
        kwargs={"threads": 3, "stop": stop, "broker": redis_broker},
        daemon=True,
    )
    thread.start()
    try:
        issue = send.start_send(settings, 1)
        worker.get_sender(settings).enqueue_send(issue.id)
        smtp_server.wait_for(120, timeout=60)
        for _ in range(200):
            if issue_row(settings, 1).status == "sent":
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert Counter(Counter(m.to for m in smtp_server.messages).values()) == {1: 120}
    row = issue_row(settings, 1)
    assert (row.status, row.sent_count) == ("sent", 120)


def test_broker_url_must_be_redis_or_amqp():
    from newsletter.delivery.worker import make_broker

    with pytest.raises(ValueError):
        make_broker("http://example.org")
