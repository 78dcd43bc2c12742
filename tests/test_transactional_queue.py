"""Transactional mail through the durable queue (the outbox pattern): written
in the transaction of the change that asks for it, sent by the sender with
retries, backoff, suppression and a record per mail; an SMTP outage delays it
and never loses it. Real SMTP servers (aiosmtpd), the real database."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from newsletter import clock
from newsletter.db import get_engine, session_scope
from newsletter.delivery import mailqueue
from newsletter.delivery.transports import TransportError
from newsletter.readers import service
from newsletter.scheduling import notices, runs
from newsletter.suppression import suppress
from tests.delivery_fixtures import queued_mail
from tests.editor_fixtures import ADMIN, Browser, login, make_account
from tests.helpers import SmtpSink, free_port, race
from tests.readers_fixtures import post_form, reader


def dead_smtp() -> str:
    return f"smtp://127.0.0.1:{free_port()}?timeout=2"


def test_subscribe_queues_the_confirmation_in_its_own_transaction(settings, topics):
    outcome = service.subscribe(settings, email="ann@example.org", name="Ann", topics=["agents"])
    assert outcome.result == "created" and outcome.mail_queued
    [mail] = queued_mail()
    assert (mail.kind, mail.template, mail.to_email, mail.to_name, mail.status) == (
        "confirmation",
        "confirm",
        "ann@example.org",
        "",  # nothing typed goes into mail to an unproven address (issue 12)
        "pending",
    )
    assert mail.subscriber_id == outcome.subscriber_id and "/confirm/" in mail.context


def test_a_subscribe_whose_mail_cannot_be_queued_changes_nothing(settings, topics):
    """The reader and the mail commit together or not at all: with the queue's
    table gone, the subscribe fails and no reader is left without a mail."""
    with get_engine().begin() as connection:
        connection.execute(text("ALTER TABLE transactionalmail RENAME TO transactionalmail_away"))
    try:
        with pytest.raises(DBAPIError):
            service.subscribe(settings, email="ann@example.org", topics=["agents"])
        assert reader("ann@example.org") is None
    finally:
        with get_engine().begin() as connection:
            connection.execute(text("ALTER TABLE transactionalmail_away RENAME TO transactionalmail"))


def test_confirm_queues_the_welcome_once(settings, topics):
    outcome = service.subscribe(settings, email="bo@example.org", topics=["agents"])
    issued = int(clock.now().timestamp())
    results = [service.confirm(settings, outcome.subscriber_id, issued).result for _ in range(3)]
    assert results == ["confirmed", "already", "already"]
    assert [m.kind for m in queued_mail()] == ["confirmation", "welcome"]
    welcome = queued_mail()[1]
    assert "List-Unsubscribe-Post" in welcome.headers


def test_a_request_never_waits_on_a_dead_mail_server(make_app, topics):
    client = make_app(transport=dead_smtp()).test_client()
    started = time.perf_counter()
    response = post_form(client, "/subscribe", {"email": "cy@example.org", "topics": ["agents"]})
    assert response.status_code == 302 and time.perf_counter() - started < 1.0
    assert [m.status for m in queued_mail()] == ["pending"]


def test_an_outage_delays_the_mail_and_loses_nothing(make_settings, topics):
    port = free_port()
    settings = make_settings(transport=f"smtp://127.0.0.1:{port}?timeout=2")
    service.subscribe(settings, email="di@example.org", topics=["agents"])
    with pytest.raises(TransportError):
        mailqueue.send_due(settings)
    [mail] = queued_mail()
    assert mail.status == "pending" and mail.attempts == 0  # not charged: nobody judged it
    assert "cannot connect" in mail.last_error
    server = SmtpSink(port=port)
    server.start()
    try:
        stats = mailqueue.send_due(settings)
        [received] = server.wait_for(1)
    finally:
        server.stop()
    assert stats.sent == 1 and received.rcpt_tos == ["di@example.org"]
    assert received.message["Message-ID"] == mailqueue.message_id(settings, mail.id)
    [mail] = queued_mail()
    assert mail.status == "sent" and mail.message_id and mail.context == "{}"  # links not kept


def test_transient_refusals_retry_with_backoff_then_fail_and_an_editor_retries(
    make_settings, smtp_server, topics
):
    settings = make_settings(transport=smtp_server.dsn, max_attempts=2, retry_base_seconds=60)
    smtp_server.respond = lambda rcpt: "451 4.7.1 try again later"
    service.subscribe(settings, email="ed@example.org", topics=["agents"])
    assert mailqueue.send_due(settings).retried == 1
    [mail] = queued_mail()
    assert mail.status == "pending" and mail.attempts == 1 and mail.last_error.startswith("451")
    assert mail.next_attempt_at > clock.now() + timedelta(seconds=29)  # backoff, not at once
    assert mailqueue.send_due(settings).sent == 0  # not due yet
    clock.set(mail.next_attempt_at + timedelta(seconds=1))
    assert mailqueue.send_due(settings).failed == 1
    [mail] = queued_mail()
    assert mail.status == "failed" and "gave up after 2 attempts" in mail.last_error
    assert reader("ed@example.org").status == "pending"  # a transient failure never bounces anybody

    smtp_server.respond = None
    with session_scope() as session:
        assert mailqueue.retry(session, mail.id) == 1
    assert mailqueue.send_due(settings).sent == 1
    assert smtp_server.wait_for(1)[0].rcpt_tos == ["ed@example.org"]


def test_a_suppressed_address_is_skipped_with_the_reason(make_settings, smtp_server, topics):
    settings = make_settings(transport=smtp_server.dsn)
    service.subscribe(settings, email="fay@example.org", topics=["agents"])
    with session_scope() as session:
        suppress(session, "fay@example.org", "complaint")
    assert mailqueue.send_due(settings).skipped == 1
    [mail] = queued_mail()
    assert mail.status == "skipped" and mail.last_error == "address suppressed (complaint)"
    assert smtp_server.messages == []


def test_a_lost_senders_lease_expires_and_the_mail_goes_out(make_settings, smtp_server, topics):
    settings = make_settings(transport=smtp_server.dsn, send_lease_seconds=60)
    service.subscribe(settings, email="gus@example.org", topics=["agents"])
    assert len(mailqueue.claim(settings, "a-sender-that-dies")) == 1
    assert mailqueue.send_due(settings).sent == 0  # leased: nobody else takes it
    clock.set(clock.now() + timedelta(seconds=61))
    assert mailqueue.reclaim_expired(settings) == 1
    assert mailqueue.send_due(settings).sent == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_concurrent_senders_send_each_mail_once(make_settings, smtp_server, topics):
    settings = make_settings(transport=smtp_server.dsn)
    for n in range(30):
        service.subscribe(settings, email=f"r{n}@example.org", topics=["agents"])
    errors = race(*[lambda: mailqueue.send_due(settings) for _ in range(4)])
    assert errors == [None] * 4
    smtp_server.wait_for(30)
    time.sleep(0.2)
    assert sorted(m.to for m in smtp_server.messages) == sorted(f"r{n}@example.org" for n in range(30))
    assert {m.status for m in queued_mail()} == {"sent"}


def test_erasing_a_reader_deletes_their_queued_mail(settings, topics):
    outcome = service.subscribe(settings, email="hal@example.org", topics=["agents"])
    with session_scope() as session:
        service.erase(session, session.get(service.Subscriber, outcome.subscriber_id))
    assert queued_mail() == []


def test_a_scheduler_notice_commits_with_the_record_or_not_at_all(app, settings):
    settings = replace(settings, editor_emails=("ed@example.org",))
    slot = clock.now()
    runs.claim("send", slot)
    with pytest.raises(RuntimeError):
        runs.move(
            "send",
            slot,
            expect="started",
            state="done",
            then=lambda conn: (_ for _ in ()).throw(RuntimeError()),
        )
    assert runs.get("send", slot).state == "started" and queued_mail() == []
    told = notices.notice(settings, "review_empty", "No issue this week", slot_text="Mon", reason="none")
    assert runs.move("send", slot, expect="started", state="done", then=told)
    [mail] = queued_mail()
    assert (mail.kind, mail.to_email, mail.subject) == ("notice", "ed@example.org", "No issue this week")


def test_the_background_sender_is_woken_by_a_commit(make_settings, smtp_server, mail_sender, topics):
    settings = make_settings(transport=smtp_server.dsn)
    sender = mail_sender(settings)
    sender.poll = 30.0  # only the wake-up can make it send in time
    time.sleep(0.2)
    service.subscribe(settings, email="ida@example.org", topics=["agents"])
    assert smtp_server.wait_for(1, timeout=5)[0].rcpt_tos == ["ida@example.org"]


def test_the_editor_sees_waiting_and_failed_mail_and_retries(make_app, make_settings, smtp_server, topics):
    app = make_app(transport=smtp_server.dsn)
    settings = make_settings(transport=smtp_server.dsn, max_attempts=1)
    smtp_server.respond = lambda rcpt: "451 4.3.0 mailbox busy" if rcpt.startswith("jo") else None
    service.subscribe(settings, email="jo@example.org", topics=["agents"])
    service.subscribe(settings, email="kim@example.org", topics=["agents"])
    mailqueue.send_due(settings)
    service.subscribe(settings, email="lu@example.org", topics=["agents"])  # still waiting
    make_account(*ADMIN, "admin")
    client = app.test_client()
    login(client, *ADMIN)
    browser = Browser(client)
    page = browser.get("/editor/mail").get_data(as_text=True)
    assert "jo@example.org" in page and "lu@example.org" in page and "451 4.3.0" in page
    assert 'data-count="failed">1<' in page and 'data-count="pending">1<' in page
    failed = browser.get("/editor/mail?status=failed").get_data(as_text=True)
    assert "jo@example.org" in failed and "kim@example.org" not in failed
    [jo] = [m for m in queued_mail() if m.to_email == "jo@example.org"]
    assert client.post(f"/editor/mail/{jo.id}/retry").status_code == 400  # no CSRF token: refused
    assert browser.post(f"/editor/mail/{jo.id}/retry").status_code == 302
    assert [m.status for m in queued_mail() if m.id == jo.id] == ["pending"]
    smtp_server.respond = None
    wait = mailqueue.send_due(settings)
    assert wait.sent == 2  # jo again, and lu
    assert sorted(m.to for m in smtp_server.messages) == [
        "jo@example.org",
        "kim@example.org",
        "lu@example.org",
    ]


def test_the_mail_page_is_for_admins(make_app):
    from tests.editor_fixtures import EDITOR

    app = make_app()
    make_account(*EDITOR, "editor")
    client = app.test_client()
    login(client, *EDITOR)
    assert client.get("/editor/mail").status_code == 403
