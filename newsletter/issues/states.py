"""The issue state machine: every status, every move, and one way to make a move.

::

    draft ──approve──▶ approved ──schedule──▶ scheduled
      ▲                  │  ▲                    │
      └──── edit ────────┘  └─── unschedule ─────┘
                      start (approved | scheduled)
                                 ▼
                              sending ◀──resume── paused
                                 │  ──pause──▶
                               finish
                                 ▼
                                sent
    draft | approved | scheduled ──cancel──▶ cancelled
    sending | paused ──cancel_send──▶ cancelled

A move is one conditional ``UPDATE issue SET status = <target> … WHERE id =
? AND status IN (<sources>)``: of two callers racing (the scheduler starting
a send while an editor cancels), exactly one changes the row and the other
learns it lost (``move`` returns False). No code writes ``Issue.status``
any other way.

The named sets below are the one spelling of "which statuses" for services,
views and templates.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import update

from newsletter import clock
from newsletter.models import Issue

DRAFT = "draft"
APPROVED = "approved"
SCHEDULED = "scheduled"
SENDING = "sending"
PAUSED = "paused"
SENT = "sent"
CANCELLED = "cancelled"
ALL = (DRAFT, APPROVED, SCHEDULED, SENDING, PAUSED, SENT, CANCELLED)

EDITABLE = frozenset({DRAFT, APPROVED, SCHEDULED})  # content may change (an approval is withdrawn)
APPROVED_STATES = frozenset({APPROVED, SCHEDULED})  # reviewed: what is there is what will be sent
STARTABLE = APPROVED_STATES  # a send may start
IN_FLIGHT = frozenset({SENDING, PAUSED})  # a send started and has not ended
PUBLIC = frozenset({SENDING, PAUSED, SENT})  # mail is out: shown in the web archive
FINISHED = frozenset({SENT, CANCELLED})
OPEN = EDITABLE | IN_FLIGHT  # everything not finished


class Transition(NamedTuple):
    name: str
    sources: frozenset[str]
    target: str


APPROVE = Transition("approve", frozenset({DRAFT}), APPROVED)
SCHEDULE = Transition("schedule", EDITABLE, SCHEDULED)  # scheduling approves a draft too
UNSCHEDULE = Transition("unschedule", frozenset({SCHEDULED}), APPROVED)
EDIT = Transition("edit", EDITABLE, DRAFT)  # changed content goes back to review
START = Transition("start", STARTABLE, SENDING)
PAUSE = Transition("pause", frozenset({SENDING}), PAUSED)
RESUME = Transition("resume", frozenset({PAUSED}), SENDING)
FINISH = Transition("finish", frozenset({SENDING}), SENT)
CANCEL = Transition("cancel", EDITABLE, CANCELLED)
CANCEL_SEND = Transition("cancel_send", IN_FLIGHT, CANCELLED)
TRANSITIONS = (APPROVE, SCHEDULE, UNSCHEDULE, EDIT, START, PAUSE, RESUME, FINISH, CANCEL, CANCEL_SEND)

_ISSUE = Issue.__table__


def narrowed(transition: Transition, status: str) -> Transition:
    """``transition`` from exactly ``status`` (compare-and-set on the status a
    caller read). ValueError when the machine has no such move."""
    if status not in transition.sources:
        raise ValueError(f"an issue that is {status} cannot {transition.name.replace('_', ' ')}")
    return transition._replace(sources=frozenset({status}))


def move(connection, issue_id: int, transition: Transition, *, where=None, **values) -> bool:
    """Apply ``transition`` to the issue if its status is still one of the
    sources (and ``where`` holds), with ``values`` written in the same
    UPDATE. True when this caller made the move. ``connection``: a Session or
    a Core connection, inside the caller's transaction."""
    statement = update(_ISSUE).where(_ISSUE.c.id == issue_id, _ISSUE.c.status.in_(sorted(transition.sources)))
    if where is not None:
        statement = statement.where(where)
    values.setdefault("updated_at", clock.now())
    return connection.execute(statement.values(status=transition.target, **values)).rowcount == 1
