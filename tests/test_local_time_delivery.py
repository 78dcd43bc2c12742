"""Local-time delivery under a controlled clock: every reader gets the weekly
issue at the slot's wall-clock time in their own zone, across Europe's
spring DST change, with +14, +05:45, −02:30 (NDT) and −11 zones. Real
database (SQLite or PostgreSQL), real SMTP server (aiosmtpd), the real
scheduler tick and dispatcher; only the clock is ours.

The slot is Sunday 29 March 2026 08:00 Europe/Berlin — the morning the
clocks go forward (01:00 UTC). Kiritimati reaches Sunday 08:00 on Saturday
evening UTC, while Berlin is still on CET; Berlin itself reaches it after the
change, at 06:00 UTC rather than 07:00; Pago Pago last, 25 hours after the
first. One send, one row per reader, each due at its own moment.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import event, select, update

from newsletter import clock, db
from newsletter.app import create_app
from newsletter.db import session_scope
from newsletter.delivery import send
from newsletter.delivery.deliver import deliver, run_senders
from newsletter.delivery.mailqueue import send_due
from newsletter.delivery.runner import Runner
from newsletter.delivery.send import finish_issue
from newsletter.issues.service import approve_issue, schedule_issue
from newsletter.models import Delivery, Issue, Subscriber
from newsletter.scheduling import jobs, runs, slots
from tests.content_fixtures import add_articles, article, make_sections
from tests.delivery_fixtures import add_subscribers
from tests.helpers import run_concurrently


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


EDITOR = "editor@example.org"
SLOT = utc(2026, 3, 29, 6, 0)  # Sunday 08:00 CEST, the day the clocks go forward
WALL = datetime(2026, 3, 29, 8, 0)
# Each zone's Sunday 08:00, in UTC; the zone of the readers without one is Berlin's.
MOMENTS = {
    "Pacific/Kiritimati": utc(2026, 3, 28, 18, 0),  # +14, still CET in Berlin (19:00)
    "Asia/Kathmandu": utc(2026, 3, 29, 2, 15),  # +05:45
    "Europe/Berlin": utc(2026, 3, 29, 6, 0),  # CEST since 01:00 UTC: 06:00, not 07:00
    "America/St_Johns": utc(2026, 3, 29, 10, 30),  # NDT, −02:30
    "Pacific/Pago_Pago": utc(2026, 3, 29, 19, 0),  # −11
}
FIRST, LAST = MOMENTS["Pacific/Kiritimati"], MOMENTS["Pacific/Pago_Pago"]
PER_ZONE = 3


def zone_of(email: str) -> str:
    with session_scope() as session:
        zone = session.scalar(select(Subscriber.timezone).where(Subscriber.email == email))
    return zone or "Europe/Berlin"


@pytest.fixture
def local(make_settings, smtp_server):
    """Weekly Sunday 08:00 Berlin, local-time delivery on, three readers per
    zone plus three without a zone, articles in the week before."""

    def build(**overrides):
        values = dict(
            transport=smtp_server.dsn,
            schedule="0 8 * * sun",
            timezone="Europe/Berlin",
            review_hours=24,
            editor_emails=(EDITOR,),
            send_concurrency=2,
            local_time_delivery=True,
        )
        values.update(overrides)
        settings = make_settings(**values)
        db.init_engine(settings.database_url)
        return settings

    settings = build()
    clock.set(FIRST - timedelta(days=3))
    make_sections()
    add_articles(settings, [article(n, "ai-agents", at=FIRST - timedelta(days=2, hours=n)) for n in range(3)])
    for zone in MOMENTS:
        prefix = zone.split("/")[1].lower()
        ids = add_subscribers(settings, PER_ZONE, prefix=prefix)
        if zone != "Europe/Berlin":
            with session_scope() as session:
                session.execute(update(Subscriber).where(Subscriber.id.in_(ids)).values(timezone=zone))
    add_subscribers(settings, PER_ZONE, prefix="nozone")  # the newsletter's zone: Berlin's moment
    return build


def readers_mail(smtp_server) -> list:
    return [m for m in smtp_server.messages if m.to != EDITOR]


def tick_at(settings, moment: datetime, mode=jobs.Mode(dispatch=False)) -> list[str]:
    clock.set(moment)
    actions = jobs.tick(settings, mode=mode)
    send_due(settings)
    return actions


def send_due_rows(settings, issue_id: int) -> None:
    """What the sender thread does when it wakes: send every row that is due
    now (``wait=False``: return instead of sleeping until the next wave)."""
    run_senders(settings, issue_id, wait=False)
    finish_issue(issue_id)


def the_issue() -> Issue:
    with session_scope() as session:
        return session.scalars(select(Issue)).one()


def test_every_reader_gets_it_at_eight_in_their_own_zone_across_the_dst_change(local, smtp_server):
    settings = local()
    assert slots.lead(settings, FIRST - timedelta(days=2)) == SLOT - FIRST  # 12 h: +14 vs CEST

    # The review counts from the first zone: 24 h before Kiritimati's 08:00, not Berlin's.
    tick_at(settings, FIRST - timedelta(hours=24, minutes=1))
    assert [m for m in smtp_server.messages if m.to == EDITOR] == []
    tick_at(settings, FIRST - timedelta(hours=24))
    [review] = smtp_server.wait_for(1)
    assert review.message["Subject"] == "Review Issue 001 before Sat 28 Mar 2026 19:00 CET (18:00 UTC)"
    assert "approve before then" in review.text and "Sun 29 Mar 2026 08:00 in each reader" in review.text
    approve_issue(1, by=EDITOR)

    tick_at(settings, FIRST - timedelta(seconds=1))
    assert the_issue().status == "approved"
    tick_at(settings, FIRST)  # the send starts once, at the first zone's moment
    issue = the_issue()
    assert issue.status == "sending" and issue.recipients == 6 * PER_ZONE
    with session_scope() as session:
        rows = session.execute(select(Delivery.email, Delivery.timezone, Delivery.next_attempt_at)).all()
    assert {(zone, due) for _, zone, due in rows} == set(MOMENTS.items())  # one moment per zone

    for zone, moment in sorted(MOMENTS.items(), key=lambda kv: kv[1]):
        before = len(readers_mail(smtp_server))
        clock.set(moment - timedelta(seconds=1))
        send_due_rows(settings, issue.id)
        assert len(readers_mail(smtp_server)) == before, f"{zone} got it early"
        clock.set(moment)
        send_due_rows(settings, issue.id)
        arrived = readers_mail(smtp_server)[before:]
        expected = 2 * PER_ZONE if zone == "Europe/Berlin" else PER_ZONE
        assert len(arrived) == expected and {zone_of(m.to) for m in arrived} == {zone}
        if moment != LAST:
            assert the_issue().status == "sending"  # until the last wave is done

    # Every reader once, each at 08:00 on Sunday their own time (the server's clock).
    mail = readers_mail(smtp_server)
    assert Counter(m.to for m in mail) == {m.to: 1 for m in mail} and len(mail) == 6 * PER_ZONE
    for m in mail:
        local_time = m.received_at.astimezone(ZoneInfo(zone_of(m.to)))
        assert (local_time.date(), local_time.hour, local_time.minute) == (WALL.date(), 8, 0), m.to
    with session_scope() as session:
        for email, sent_at in session.execute(select(Delivery.email, Delivery.sent_at)):
            assert sent_at.astimezone(ZoneInfo(zone_of(email))).replace(tzinfo=None) == WALL
    issue = the_issue()
    assert (issue.status, issue.sent_count) == ("sent", 6 * PER_ZONE)
    assert runs.get(jobs.SEND, SLOT).state == "done"


def two_waves_sent(local):
    """The send started at the first zone's moment and the rows due by
    Kathmandu's sent: Kiritimati's and Kathmandu's waves out, three to come."""
    settings = local(review_hours=0, auto_send=True)
    tick_at(settings, FIRST - timedelta(days=1))
    tick_at(settings, FIRST)
    issue = the_issue()
    clock.set(MOMENTS["Asia/Kathmandu"])
    send_due_rows(settings, issue.id)
    return settings, issue


def test_status_by_zone_pause_resume_and_cancel_apply_to_waves_to_come(local, smtp_server):
    settings, issue = two_waves_sent(local)

    # `issue status`: sent and still-scheduled readers by zone, first zone first.
    result = create_app(settings).test_cli_runner().invoke(args=["issue", "status", "1"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    assert [(w[0], int(w[1]), int(w[3])) for w in lines] == [
        ("Pacific/Kiritimati", 3, 0),
        ("Asia/Kathmandu", 3, 0),
        ("Europe/Berlin", 0, 6),
        ("America/St_Johns", 0, 3),
        ("Pacific/Pago_Pago", 0, 3),
    ]
    assert "at Sun 29 Mar 2026 08:00 America/St_Johns (Sun 10:30 UTC)" in result.output
    waves = send.waves_to_come(issue.id)
    assert [(w, z, n) for w, z, n in waves] == [
        (MOMENTS["Europe/Berlin"], "Europe/Berlin", 6),
        (MOMENTS["America/St_Johns"], "America/St_Johns", 3),
        (MOMENTS["Pacific/Pago_Pago"], "Pacific/Pago_Pago", 3),
    ]

    # Paused: Berlin's moment passes and nobody is sent; resumed, Berlin goes out late, the rest on time.
    send.pause_issue(1)
    clock.set(MOMENTS["Europe/Berlin"] + timedelta(minutes=5))
    send_due_rows(settings, issue.id)
    assert len(readers_mail(smtp_server)) == 2 * PER_ZONE
    send.resume_issue(1)
    send_due_rows(settings, issue.id)
    assert len(readers_mail(smtp_server)) == 4 * PER_ZONE
    clock.set(MOMENTS["America/St_Johns"] - timedelta(minutes=1))
    send_due_rows(settings, issue.id)
    assert len(readers_mail(smtp_server)) == 4 * PER_ZONE

    # Cancelled before the last two waves: they are skipped, what was sent stays sent.
    send.cancel_sending(1)
    clock.set(LAST + timedelta(hours=1))
    send_due_rows(settings, issue.id)
    assert len(readers_mail(smtp_server)) == 4 * PER_ZONE
    issue = the_issue()
    assert (issue.status, issue.sent_count, issue.skipped_count) == ("cancelled", 4 * PER_ZONE, 2 * PER_ZONE)
    assert send.waves_to_come(issue.id) == []


def test_approved_after_the_first_zones_moment_the_passed_zones_get_it_at_once(local, smtp_server):
    """The approval deadline is the first zone's 08:00. Not approved then: the
    editors are told it is waiting (with the first and last reader's times);
    approved within the grace period, the zones whose 08:00 has passed get it
    at once and every later zone still at its own 08:00."""
    settings = local()
    tick_at(settings, FIRST - timedelta(hours=24))  # review: Issue 001
    tick_at(settings, FIRST)
    waiting = [m for m in smtp_server.wait_for(2) if m.to == EDITOR][-1]
    assert waiting.message["Subject"] == "Issue 001 is waiting for approval"
    text = " ".join(waiting.text.split())
    assert "the first readers at Sat 28 Mar 2026 19:00 CET (18:00 UTC)" in text
    assert (
        "within 6 hours of the first readers' time" in text and "to everyone else at their own time" in text
    )
    assert the_issue().status == "draft" and readers_mail(smtp_server) == []

    approve_issue(1, by=EDITOR)
    tick_at(settings, FIRST + timedelta(hours=5))  # within the grace period, before Kathmandu's 08:00
    issue = the_issue()
    assert issue.status == "sending"
    send_due_rows(settings, issue.id)
    assert {zone_of(m.to) for m in readers_mail(smtp_server)} == {"Pacific/Kiritimati"}  # late, at once
    assert len(readers_mail(smtp_server)) == PER_ZONE
    for zone in ("Asia/Kathmandu", "Europe/Berlin", "America/St_Johns", "Pacific/Pago_Pago"):
        clock.set(MOMENTS[zone] - timedelta(seconds=1))
        send_due_rows(settings, issue.id)
        assert zone not in {zone_of(m.to) for m in readers_mail(smtp_server)}, f"{zone} got it early"
        clock.set(MOMENTS[zone])
        send_due_rows(settings, issue.id)
    mail = readers_mail(smtp_server)
    assert len(mail) == 6 * PER_ZONE and len({m.to for m in mail}) == 6 * PER_ZONE
    assert the_issue().status == "sent"


def test_api_status_shows_sent_and_scheduled_readers_by_zone(local, smtp_server):
    """``GET /api/v1/issues/{n}/status`` gives the zones ``issue status``
    prints (the same ``send.zone_counts``), in the documented schema; pause
    and cancel answer with them too, and a cancel turns the waves to come
    into skipped readers."""
    settings, issue = two_waves_sent(local)
    client = create_app(settings).test_client()
    token = {"Authorization": "Bearer test-token"}
    document = client.get("/api/v1/openapi.json").json
    status_schema = document["paths"]["/issues/{number}/status"]["get"]["responses"]["200"]["content"]
    validator = Draft202012Validator(
        {**status_schema["application/json"]["schema"], "components": document["components"]}
    )

    status = client.get("/api/v1/issues/1/status", headers=token)
    assert status.status_code == 200
    validator.validate(status.json)
    assert status.json["zones"] == [
        {"zone": "Pacific/Kiritimati", "sent": 3, "scheduled": 0, "scheduled_for": None,
         "due": 0, "failed": 0, "skipped": 0},
        {"zone": "Asia/Kathmandu", "sent": 3, "scheduled": 0, "scheduled_for": None,
         "due": 0, "failed": 0, "skipped": 0},
        {"zone": "Europe/Berlin", "sent": 0, "scheduled": 6, "scheduled_for": "2026-03-29T06:00:00+00:00",
         "due": 0, "failed": 0, "skipped": 0},
        {"zone": "America/St_Johns", "sent": 0, "scheduled": 3, "scheduled_for": "2026-03-29T10:30:00+00:00",
         "due": 0, "failed": 0, "skipped": 0},
        {"zone": "Pacific/Pago_Pago", "sent": 0, "scheduled": 3, "scheduled_for": "2026-03-29T19:00:00+00:00",
         "due": 0, "failed": 0, "skipped": 0},
    ]  # fmt: skip
    assert [(z.zone, z.sent, z.scheduled) for z in send.zone_counts(1)] == [
        (z["zone"], z["sent"], z["scheduled"]) for z in status.json["zones"]
    ]  # one query for the CLI and the API

    # Berlin's moment has come while paused: its readers are due, not yet sent.
    paused = client.post("/api/v1/issues/1/pause", headers=token)
    assert paused.status_code == 200 and paused.json["status"] == "paused"
    clock.set(MOMENTS["Europe/Berlin"] + timedelta(minutes=5))
    send_due_rows(settings, issue.id)
    status = client.get("/api/v1/issues/1/status", headers=token)
    validator.validate(status.json)
    berlin = next(z for z in status.json["zones"] if z["zone"] == "Europe/Berlin")
    assert (berlin["sent"], berlin["scheduled"], berlin["due"], berlin["scheduled_for"]) == (0, 0, 6, None)

    cancelled = client.post("/api/v1/issues/1/cancel", headers=token)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    status = client.get("/api/v1/issues/1/status", headers=token)
    validator.validate(status.json)
    assert [(z["zone"], z["sent"], z["scheduled"], z["skipped"]) for z in status.json["zones"]] == [
        ("Pacific/Kiritimati", 3, 0, 0),
        ("Asia/Kathmandu", 3, 0, 0),
        ("Europe/Berlin", 0, 0, 6),
        ("America/St_Johns", 0, 0, 3),
        ("Pacific/Pago_Pago", 0, 0, 3),
    ]
    assert status.json["finished"] and status.json["counts"]["skipped"] == 4 * PER_ZONE


def test_send_now_is_everyone_now_even_in_local_time_mode(local, smtp_server):
    settings = local()
    tick_at(settings, FIRST - timedelta(hours=30))
    tick_at(settings, FIRST - timedelta(hours=24))  # review: Issue 001 assembled
    approve_issue(1, by=EDITOR)
    clock.set(FIRST - timedelta(hours=20))
    final = deliver(settings, 1, here=True)  # the editor's or the CLI's "send now"
    assert (final.status, final.sent) == ("sent", 6 * PER_ZONE)
    assert len(readers_mail(smtp_server)) == 6 * PER_ZONE
    assert send.zone_counts(1) == []  # no waves: one moment for everyone
    tick_at(settings, FIRST)  # the slot finds it sent: nothing more
    assert len(readers_mail(smtp_server)) == 6 * PER_ZONE


def test_the_apis_send_now_and_a_timed_send_are_everyone_at_once(local, smtp_server):
    """The API's ``send`` (the editor's "send now") and an issue scheduled for
    a time of its own keep their meaning in local-time mode: every reader at
    that moment, in every zone; the weekly slot then finds the issue sent."""
    settings = local()
    tick_at(settings, FIRST - timedelta(hours=30))
    tick_at(settings, FIRST - timedelta(hours=24))  # Issue 001 assembled for the slot
    at = FIRST - timedelta(hours=20)
    schedule_issue(1, at, by=EDITOR)
    tick_at(settings, at - timedelta(seconds=1))
    assert the_issue().status == "scheduled"
    tick_at(settings, at)  # the timed send: one moment for everyone
    issue = the_issue()
    assert issue.status == "sending"
    with session_scope() as session:
        rows = session.execute(select(Delivery.next_attempt_at, Delivery.timezone)).all()
    assert len(rows) == 6 * PER_ZONE and {tuple(r) for r in rows} == {(at, "")}
    send_due_rows(settings, issue.id)
    assert len(readers_mail(smtp_server)) == 6 * PER_ZONE and the_issue().status == "sent"
    assert send.zone_counts(1) == []
    tick_at(settings, FIRST)  # the slot: already sent, nothing more
    assert len(readers_mail(smtp_server)) == 6 * PER_ZONE

    # Next week's issue, sent now through the API before its first zone's moment.
    clock.set(FIRST + timedelta(days=5))
    add_articles(
        settings, [article(10 + n, "ai-agents", at=clock.now() - timedelta(hours=n)) for n in range(3)]
    )
    tick_at(settings, FIRST + timedelta(days=6))  # review of the next slot: Issue 002
    approve_issue(2, by=EDITOR)
    client = create_app(settings).test_client()
    sent = client.post("/api/v1/issues/2/send", headers={"Authorization": "Bearer test-token"})
    assert sent.status_code == 202 and sent.json["zones"] == []
    with session_scope() as session:
        number_two = session.scalar(select(Issue.id).where(Issue.number == 2))
        rows = session.execute(
            select(Delivery.next_attempt_at, Delivery.timezone).where(Delivery.issue_id == number_two)
        ).all()
    assert len(rows) == 6 * PER_ZONE and {tuple(r) for r in rows} == {(clock.now(), "")}
    send_due_rows(settings, number_two)
    assert len(readers_mail(smtp_server)) == 2 * 6 * PER_ZONE
    tick_at(settings, FIRST + timedelta(days=7))  # that week's first zone: already sent
    assert len(readers_mail(smtp_server)) == 2 * 6 * PER_ZONE


def test_two_schedulers_at_the_first_wave_start_one_send(local, smtp_server):
    settings = local(review_hours=0, auto_send=True)
    tick_at(settings, FIRST - timedelta(days=1))
    clock.set(FIRST)
    errors = run_concurrently(lambda: jobs.tick(settings, mode=jobs.Mode(dispatch=False)), 4)
    assert errors == []
    issue = the_issue()
    with session_scope() as session:
        assert session.scalar(select(Delivery.id).where(Delivery.issue_id != issue.id)) is None
        assert len(session.scalars(select(Delivery.id)).all()) == 6 * PER_ZONE
    clock.set(LAST)
    send_due_rows(settings, issue.id)
    assert Counter(m.to for m in readers_mail(smtp_server)).most_common(1)[0][1] == 1
    assert the_issue().status == "sent"


def test_an_unknown_stored_zone_is_sent_at_the_newsletters_time(local, smtp_server):
    settings = local(review_hours=0, auto_send=True)
    with session_scope() as session:  # a zone the tz database has since dropped
        session.execute(
            update(Subscriber).where(Subscriber.email == "nozone0@example.org").values(timezone="Mars/Base")
        )
    tick_at(settings, FIRST - timedelta(days=1))
    tick_at(settings, FIRST)
    with session_scope() as session:
        row = session.execute(
            select(Delivery.timezone, Delivery.next_attempt_at).where(Delivery.email == "nozone0@example.org")
        ).one()
    assert tuple(row) == ("Europe/Berlin", MOMENTS["Europe/Berlin"])


def test_serves_sender_sleeps_until_the_next_wave_instead_of_polling(local, smtp_server):
    """``serve``'s sender thread (the real ``Runner``, two sender threads) on a
    running clock six seconds before Kathmandu's 08:00: it sends
    Kiritimati's overdue wave, then sleeps until Kathmandu's moment — a
    handful of claims, not a poll every few milliseconds — and sends it on
    the dot."""
    settings = local(review_hours=0, auto_send=True)
    tick_at(settings, FIRST - timedelta(days=1))
    tick_at(settings, FIRST)
    clock.reset()
    offset = MOMENTS["Asia/Kathmandu"] - timedelta(seconds=6) - datetime.now(UTC)
    clock.set_source(lambda: datetime.now(UTC) + offset)
    claims = []

    def count_claims(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE DELIVERY SET STATUS"):
            claims.append(clock.now())

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", count_claims)
    runner = Runner(settings).start()
    try:
        first = smtp_server.wait_for(PER_ZONE, timeout=10)
        assert {zone_of(m.to) for m in first} == {"Pacific/Kiritimati"}
        waited_from = len(claims)
        arrived = smtp_server.wait_for(2 * PER_ZONE, timeout=15)[PER_ZONE:]
        assert {zone_of(m.to) for m in arrived} == {"Asia/Kathmandu"}
        for m in arrived:
            assert timedelta(0) <= m.received_at - MOMENTS["Asia/Kathmandu"] < timedelta(seconds=1.5)
        during_wait = [c for c in claims[waited_from:] if c < MOMENTS["Asia/Kathmandu"]]
        # Polling (at most once a second, after a quick start) made ~70 claims in these six seconds.
        assert len(during_wait) <= 8 * settings.send_concurrency, len(during_wait)
        assert the_issue().status == "sending"  # Berlin, St John's and Pago Pago are still to come
    finally:
        runner.shutdown(timeout=10)
        event.remove(engine, "before_cursor_execute", count_claims)
        clock.set_source(None)


def test_schedule_command_shows_the_first_and_last_reader(local):
    settings = local()
    clock.set(FIRST - timedelta(days=2))
    result = create_app(settings).test_cli_runner().invoke(args=["schedule", "--count", "1"])
    assert result.exit_code == 0, result.output
    assert "review from Fri 2026-03-27 19:00 CET" in result.output  # 24 h before Kiritimati's 08:00
    assert (
        "local-time delivery: Sun 29 Mar 2026 08:00 in each reader's own zone: the first readers at "
        "Sat 28 Mar 2026 19:00 CET (18:00 UTC) (approve before then), the last at Sun 29 Mar 2026 21:00 CEST "
        "(19:00 UTC)"
    ) in result.output
