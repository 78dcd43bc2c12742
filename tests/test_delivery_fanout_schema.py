"""The delivery table has no foreign keys (they were most of the fan-out's
time on PostgreSQL). These tests pin down what the keys used to guarantee:
erasing a reader removes exactly their delivery rows — also when the erasure
runs while a fan-out is inserting them — and cancelling an issue keeps its
rows, each with the reason. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, inspect, select, update

from newsletter import clock
from newsletter.db import get_engine, init_engine, make_engine, session_scope
from newsletter.delivery import fanout, outcomes, queue, send
from newsletter.delivery.batch import DispatchStats
from newsletter.delivery.transports.base import SendResult
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


class _Plans:
    """Every plan PostgreSQL chooses on the engine's connections from now on:
    ``auto_explain`` sends each to the client as a notice."""

    def __init__(self, engine):
        self.plans: list[str] = []
        self.engine = engine
        event.listen(engine, "connect", self._connected)
        engine.dispose()  # the connections made from now on

    def _connected(self, connection, _record) -> None:
        connection.add_notice_handler(lambda notice: self.plans.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_level = notice",
        ):
            connection.execute(setting)
        connection.commit()

    def close(self) -> None:
        event.remove(self.engine, "connect", self._connected)
        self.engine.dispose()


@pytest.mark.parametrize("statistics", ["taken when open rows were rare", "accurate"])
def test_a_senders_statements_find_a_batchs_rows_by_index_whatever_the_planner_thinks(settings, statistics):
    """Each statement a sender runs on delivery rows (the claim, the lease's
    heartbeat, the reclaim, the record) must find them through an index.
    Left to itself, PostgreSQL's planner read the whole table for each while
    the table was small enough that reading it looked cheaper than a few
    hundred lookups: 6.5 against 2.8 ms a record at 20,000 rows, with the
    statistics a send meets and with accurate ones (the thirteenth session).
    And statistics taken when open rows were rare made it find a record's rows
    through ix_delivery_claim, all the send's open rows (the eighth;
    docs/performance.md). Run on the real functions; on SQLite, whose planner
    uses the primary key, it checks the record's plan and the outcome."""
    engine = init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 3000)
    issue_id = send.start_send(settings, 1).id
    postgresql = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if statistics == "accurate" and postgresql:
            connection.exec_driver_sql("ANALYZE delivery")
        elif statistics != "accurate":
            connection.exec_driver_sql("UPDATE delivery SET status = 'sent'")
            if postgresql:
                connection.exec_driver_sql("ANALYZE delivery")  # open rows look rare from now on
            connection.exec_driver_sql("UPDATE delivery SET status = 'pending'")
    plans = _Plans(engine) if postgresql else None
    try:
        rows = queue.claim_batch(settings, "worker", 200, issue_id)
        lost = queue.claim_batch(settings, "lost", 200, issue_id)
        queue.renew_leases(settings, "worker")
        with make_engine(settings.database_url).begin() as connection:  # (plans not watched)
            connection.execute(  # the "lost" sender's lease runs out
                update(Delivery).where(Delivery.lease_owner == "lost").values(lease_until=clock.now())
            )
        assert queue.reclaim_expired_leases(settings, issue_id) == len(lost) == 200
        results = [SendResult("sent", provider_message_id=f"{row.id}.queued") for row in rows]
        message_ids = {row.id: f"<{row.id}@example.org>" for row in rows}
        outcomes.record(settings, "smtp", rows, results, message_ids, {}, DispatchStats())
    finally:
        if plans is not None:
            plans.close()

    if postgresql:
        updates = [plan for plan in plans.plans if "Query Text: UPDATE delivery" in plan]
        assert len(updates) >= 5  # two claims, the heartbeat, the reclaim's two, the record
        assert not [plan for plan in updates if "Seq Scan on delivery" in plan]
        records = [plan for plan in updates if "SET status = 'sent'" in plan]
        assert records and not [plan for plan in records if "ix_delivery_claim" in plan]
    else:
        with engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute(f"EXPLAIN QUERY PLAN {outcomes._SENT_SQL.format(p='?')}", ("a", "b", "c", 1, 1, 1))
            assert any("INTEGER PRIMARY KEY" in row[-1] for row in cursor.fetchall())
    recorded = [row for row in deliveries(settings, issue_id) if row.status == "sent"]
    assert sorted(row.id for row in recorded) == sorted(row.id for row in rows)
    assert {row.provider_message_id for row in recorded} == {f"{row.id}.queued" for row in rows}
