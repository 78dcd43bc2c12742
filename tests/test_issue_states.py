"""The issue state machine (``issues.states``): every move is one conditional
UPDATE, so of two callers racing exactly one wins and the loser changes
nothing. Run on PostgreSQL (NEWSLETTER_TEST_DATABASE_URL) the threads really
overlap; on SQLite the single writer serialises them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from newsletter.db import init_engine, session_scope
from newsletter.delivery import send
from newsletter.issues import service, states
from newsletter.models import Delivery, IssueRender
from tests.delivery_fixtures import add_subscribers, issue_row, make_issue
from tests.helpers import race

ROUNDS = 12


def _rows(issue_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id))


def test_the_machine_names_every_move_and_no_move_leaves_a_final_state():
    targets = {t.target for t in states.TRANSITIONS}
    assert targets <= set(states.ALL)
    for transition in states.TRANSITIONS:
        assert not transition.sources & states.FINISHED, transition.name
    with pytest.raises(ValueError, match="cannot approve"):
        states.narrowed(states.APPROVE, states.SENT)


def test_a_cancel_racing_the_start_of_the_send_has_one_winner(make_settings):
    """An editor cancels while the scheduler starts the send: either the issue
    is cancelled with no delivery row, or it is sending and the cancel was
    refused. Never a cancelled issue with pending rows."""
    settings = make_settings()
    init_engine(settings.database_url)
    add_subscribers(settings, 20)
    winners = {"cancel": 0, "start": 0}
    for number in range(1, ROUNDS + 1):
        issue_id = make_issue(settings, number)
        cancel, start = race(
            lambda n=number: service.cancel_issue(n), lambda n=number: send.start_send(settings, n)
        )
        status = issue_row(settings, number).status
        assert (cancel is None) != (start is None), (cancel, start)
        if cancel is None:
            winners["cancel"] += 1
            assert status == states.CANCELLED and _rows(issue_id) == 0
            assert isinstance(start, send.NotSendable)
        else:
            winners["start"] += 1
            assert status == states.SENDING and _rows(issue_id) == 20
            assert isinstance(cancel, service.IssueError)
    assert sum(winners.values()) == ROUNDS


def test_an_edit_racing_the_start_of_the_send_never_changes_what_is_sent(make_settings):
    """An edit that loses to the start is refused (the frozen render is what
    goes out); an edit that wins returns the issue to draft and the start is refused."""
    settings = make_settings()
    init_engine(settings.database_url)
    add_subscribers(settings, 5)
    for number in range(1, ROUNDS + 1):
        make_issue(settings, number)
        edit, start = race(
            lambda n=number: service.update_issue(n, subject=f"Changed {n}"),
            lambda n=number: send.start_send(settings, n),
        )
        issue = issue_row(settings, number)
        assert (edit is None) != (start is None), (edit, start)
        if edit is None:
            assert (issue.status, issue.subject) == (states.DRAFT, f"Changed {number}")
        else:
            assert issue.status == states.SENDING and issue.subject != f"Changed {number}"
            with session_scope() as session:
                subjects = set(
                    session.scalars(select(IssueRender.subject).where(IssueRender.issue_id == issue.id))
                )
            assert subjects and not any("Changed" in s for s in subjects)
