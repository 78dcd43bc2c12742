"""The delivery table has no foreign keys (they were most of the fan-out's
time on PostgreSQL). These tests pin down what the keys used to guarantee:
erasing a reader removes exactly their delivery rows — also when the erasure
runs while a fan-out is inserting them — and cancelling an issue keeps its
rows, each with the reason. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import inspect, select

from newsletter import clock
from newsletter.db import get_engine, init_engine, session_scope
from newsletter.delivery import fanout, outcomes, queue, send
from newsletter.models import Delivery, Subscriber
from newsletter.readers import service
from tests.delivery_fixtures import add_subscribers, deliveries, make_issue


def _erase(subscriber_id: int) -> None:
    with session_scope() as session:
        service.erase(session, session.get(Subscriber, subscriber_id))


def test_the_unique_constraint_serves_lookups_by_reader_and_fan_out_is_idempotent(settings):
    init_engine(settings.database_url)
    inspector = inspect(get_engine())
    assert inspector.get_foreign_keys("delivery") == []
    unique = [c["column_names"] for c in inspector.get_unique_constraints("delivery")]
    assert unique == [["subscriber_id", "issue_id"]]  # leads with the reader: erase and export use it
    issue_id = make_issue(settings, 1)
    add_subscribers(settings, 5)
    with session_scope() as session:
        assert fanout.fan_out(session, issue_id) == 5
    with session_scope() as session:
        assert fanout.fan_out(session, issue_id) == 0  # ON CONFLICT (issue_id, subscriber_id) DO NOTHING
    assert len(deliveries(settings, issue_id)) == 5


def test_erase_removes_only_that_readers_delivery_rows(settings):
    first, second = make_issue(settings, 1), make_issue(settings, 2)
    ids = add_subscribers(settings, 3)
    for issue_id in (first, second):
        with session_scope() as session:
            fanout.fan_out(session, issue_id)
    _erase(ids[1])
    with session_scope() as session:
        left = session.execute(select(Delivery.issue_id, Delivery.subscriber_id, Delivery.email)).all()
    assert sorted(left) == sorted(
        (issue_id, sid, f"reader{n}@example.org")
        for issue_id in (first, second)
        for n, sid in enumerate(ids)
        if n != 1
    )


def test_an_erasure_during_a_fan_out_leaves_no_row_for_the_erased_reader(settings):
    issue_id = make_issue(settings, 1)
    ids = add_subscribers(settings, 4)
    fanned_out = threading.Event()
    commit = threading.Event()
    erased = threading.Event()
    failures: list[BaseException] = []

    def fan_out_and_wait() -> None:
        try:
            with session_scope() as session:
                fanout.fan_out(session, issue_id)
                fanned_out.set()
                commit.wait(30)  # the fan-out's transaction stays open while the erasure starts
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)
            fanned_out.set()

    def erase() -> None:
        try:
            _erase(ids[2])
        except BaseException as exc:
            failures.append(exc)
        finally:
            erased.set()

    fan = threading.Thread(target=fan_out_and_wait)
    fan.start()
    assert fanned_out.wait(30)
    eraser = threading.Thread(target=erase)
    eraser.start()
    # The erasure cannot finish while the fan-out's rows are uncommitted (it would miss them).
    assert not erased.wait(1), "erase must wait for the running fan-out"
    commit.set()
    fan.join(30)
    eraser.join(30)
    assert failures == []
    rows = deliveries(settings, issue_id)
    assert sorted(r.subscriber_id for r in rows) == sorted(ids[:2] + ids[3:])
    assert "reader2@example.org" not in {r.email for r in rows}


def test_cancel_keeps_the_rows_and_says_why(settings):
    issue_id = make_issue(settings, 1)
    add_subscribers(settings, 3)
    send.start_send(settings, 1)
    send.cancel_sending(1)
    rows = deliveries(settings, issue_id)
    assert len(rows) == 3
    assert {(r.status, r.last_error) for r in rows} == {("skipped", "issue cancelled")}


_SCANS = """SELECT pg_stat_get_xact_numscans('delivery'::regclass),
    pg_stat_get_xact_numscans('ix_delivery_claim'::regclass), pg_stat_get_xact_numscans('delivery_pkey'::regclass)"""


def test_recording_a_sent_batch_finds_its_rows_by_id_whatever_the_planner_thinks(settings):
    """The record of a sent batch must look its rows up by id. PostgreSQL's
    planner chose otherwise twice: statistics taken when open rows were rare
    made it read every open row of a new send through ix_delivery_claim (the
    eighth session), and while the table is small enough that reading it
    whole looks cheaper than 200 lookups, it read and hashed the whole table
    for every batch (the thirteenth: 6.5 against 2.8 ms a batch at 20,000
    rows; docs/performance.md). Counted in the real record's own
    transaction: no scan of the table, none of the claim index."""
    engine = init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 3000)
    issue_id = send.start_send(settings, 1).id
    postgresql = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE delivery SET status = 'sent'")
        if postgresql:
            connection.exec_driver_sql("ANALYZE delivery")  # open rows look rare from now on
        connection.exec_driver_sql("UPDATE delivery SET status = 'pending'")
    rows = queue.claim_batch(settings, "worker", 200, issue_id)
    sent = [(row.email, f"<{row.id}@example.org>", None, row.id) for row in rows]

    with engine.begin() as connection:
        if postgresql:
            before = connection.exec_driver_sql(_SCANS).one()  # (counts not yet flushed: a difference)
            outcomes._mark_sent(connection, sent, clock.now())
            after = connection.exec_driver_sql(_SCANS).one()
            table_scans, claim_index_scans, id_lookups = (a - b for a, b in zip(after, before, strict=True))
            assert (table_scans, claim_index_scans) == (0, 0)
            assert id_lookups >= 1
        else:
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute(
                f"EXPLAIN QUERY PLAN {outcomes._SENT_SQL.format(p='?')}",
                (*sent[0][:3], clock.now(), clock.now(), sent[0][3]),
            )
            assert any("INTEGER PRIMARY KEY" in row[-1] for row in cursor.fetchall())
            outcomes._mark_sent(connection, sent, clock.now())
    recorded = [row for row in deliveries(settings, issue_id) if row.status == "sent"]
    assert sorted(row.id for row in recorded) == sorted(row.id for row in rows)
