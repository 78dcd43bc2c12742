"""Outgoing webhooks: signed (HMAC-SHA256 with a timestamp), queued in the
event's own transaction, delivered by the transactional mail queue's sender
to a real local HTTP endpoint, retried after a failure, shown in the editor's
delivery log; forged, altered or stale signatures do not verify."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from http.server import ThreadingHTTPServer

import pytest
from sqlalchemy import select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.delivery import webhooks
from newsletter.delivery.deliver import deliver
from newsletter.delivery.mailqueue import send_due
from newsletter.issues.service import approve_issue
from newsletter.models import Subscriber, TransactionalMail
from newsletter.readers import service
from tests.editor_fixtures import add_subscriber, seed_issue
from tests.helpers import LoopbackServer, QuietHandler


class Receiver(LoopbackServer):
    """An HTTP endpoint that keeps what it receives and answers ``statuses`` in turn (then 200)."""

    def __init__(self, statuses=()):
        self.received: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.reply(receiver.statuses.pop(0) if receiver.statuses else 200, {}, b"ok")

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def receiver():
    peer = Receiver(statuses=[500])
    yield peer
    peer.stop()


def endpoint(url: str, events) -> str:
    with session_scope() as session:
        return webhooks.create_endpoint(session, url=url, events=events, created_by="test").secret


def rows() -> list[TransactionalMail]:
    with session_scope() as session:
        return list(session.scalars(select(TransactionalMail).where(TransactionalMail.kind == "webhook")))


def test_signature_verifies_and_forgeries_do_not():
    body = b'{"event":"issue.sent"}'
    header = webhooks.sign("whsec_x", int(time.time()), body)
    assert webhooks.verify("whsec_x", header, body)
    assert not webhooks.verify("whsec_y", header, body)
    assert not webhooks.verify("whsec_x", header, body + b" ")
    assert not webhooks.verify("whsec_x", webhooks.sign("whsec_x", int(time.time()) - 3600, body), body)
    for forged in ("", "t=1", "v1=abc", "t=x,v1=y", header.replace("v1=", "v1=0")):
        assert not webhooks.verify("whsec_x", forged, body)


def test_endpoints_refuse_bad_urls_and_events(app):
    with session_scope() as session:
        for url, events in (("ftp://x.org", ["issue.sent"]), ("https://a b.org", ["issue.sent"]),
                            ("https://x.org", []), ("https://x.org", ["issue.deleted"])):  # fmt: skip
            with pytest.raises(webhooks.WebhookError):
                webhooks.create_endpoint(session, url=url, events=events)


def test_unsubscribe_is_delivered_signed_and_retried_after_a_failure(app, settings, receiver):
    secret = endpoint(receiver.url + "/hook", ["subscriber.unsubscribed", "issue.sent"])
    reader = add_subscriber("ann@example.org")
    with session_scope() as session:
        assert service.unsubscribe(session, session.get(Subscriber, reader), "api")
    [row] = rows()
    assert (row.status, row.subject) == ("pending", "subscriber.unsubscribed")

    send_due(settings)  # the endpoint answers 500: kept, to be tried again later
    [row] = rows()
    assert row.status == "pending" and row.attempts == 1 and "HTTP 500" in row.last_error
    assert len(receiver.received) == 1
    send_due(settings)
    assert len(receiver.received) == 1  # not due yet

    clock.advance(timedelta(hours=2))
    send_due(settings)
    [row] = rows()
    assert row.status == "sent" and row.attempts == 2
    first, second = receiver.received
    assert first["body"] == second["body"]  # the same event, redelivered
    payload = json.loads(second["body"])
    assert payload["event"] == "subscriber.unsubscribed"
    assert payload["data"]["email"] == "ann@example.org" and payload["data"]["source"] == "api"
    assert second["headers"]["Signal-Event"] == "subscriber.unsubscribed"
    assert webhooks.verify(secret, second["headers"]["Signal-Signature"], second["body"])
    assert not webhooks.verify("whsec_other", second["headers"]["Signal-Signature"], second["body"])


def test_confirm_and_issue_sent_reach_only_the_endpoints_that_want_them(app, settings, receiver):
    other = Receiver()
    try:
        endpoint(receiver.url, ["issue.sent", "issue.failed"])
        endpoint(other.url, ["subscriber.confirmed"])
        outcome = service.subscribe(settings, email="bo@example.org")
        assert service.confirm(settings, outcome.subscriber_id, int(time.time())).result == "confirmed"
        number = seed_issue(settings)
        add_subscriber("cy@example.org")
        approve_issue(number, "ed@example.org")
        deliver(settings, number, here=True)
        receiver.statuses.clear()
        send_due(settings)
        assert [json.loads(r["body"])["event"] for r in receiver.received] == ["issue.sent"]
        sent = json.loads(receiver.received[0]["body"])["data"]
        assert sent["number"] == number and sent["sent"] == 2 and sent["failed"] == 0
        events = [json.loads(r["body"])["event"] for r in other.received]
        assert events == ["subscriber.confirmed"]
    finally:
        other.stop()


def test_a_removed_endpoint_gets_nothing_more(app, settings, receiver):
    endpoint(receiver.url, ["subscriber.unsubscribed"])
    reader = add_subscriber("ann@example.org")
    with session_scope() as session:
        service.unsubscribe(session, session.get(Subscriber, reader), "api")
        webhooks.remove_endpoint(session, webhooks.list_endpoints(session)[0].id)
    send_due(settings)
    [row] = rows()
    assert row.status == "failed" and "removed" in row.last_error and receiver.received == []


def test_editor_page_adds_shows_the_secret_once_and_logs(admin, editor, app, settings, receiver):
    admin.get("/editor/webhooks")
    made = admin.post("/editor/webhooks", data={"url": receiver.url, "events": ["subscriber.unsubscribed"]})
    assert made.status_code == 200
    html = made.get_data(as_text=True)
    assert 'id="webhook-secret">whsec_' in html
    again = admin.get("/editor/webhooks").get_data(as_text=True)
    assert "whsec_" not in again and receiver.url in again
    bad = admin.post("/editor/webhooks", data={"url": "javascript:alert(1)", "events": ["issue.sent"]})
    assert bad.status_code == 400
    assert editor.get("/editor/webhooks").status_code == 403
    reader = add_subscriber("ann@example.org")
    with session_scope() as session:
        service.unsubscribe(session, session.get(Subscriber, reader), "editor")
    send_due(settings)
    log = admin.get("/editor/webhooks").get_data(as_text=True)
    assert "subscriber.unsubscribed" in log and "HTTP 500" in log


def test_a_send_with_failed_deliveries_also_tells_issue_failed(make_app, smtp_server, receiver):
    app = make_app(transport=smtp_server.dsn, send_concurrency=1)
    settings = app.extensions["signal_settings"]
    smtp_server.respond = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("gone@") else None
    endpoint(receiver.url, ["issue.failed", "issue.sent"])
    number = seed_issue(settings)
    add_subscriber("ann@example.org")
    add_subscriber("gone@example.org")
    approve_issue(number, "ed@example.org")
    deliver(settings, number, here=True)
    receiver.statuses.clear()
    send_due(settings)
    events = {json.loads(r["body"])["event"]: json.loads(r["body"])["data"] for r in receiver.received}
    assert set(events) == {"issue.sent", "issue.failed"}
    assert events["issue.failed"]["failed"] == 1 and events["issue.failed"]["sent"] == 1
