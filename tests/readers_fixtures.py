"""Helpers for the reader's-path tests: topics, CSRF tokens, mail in the outbox."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import Event, OutboxMessage, Subscriber, Tag
from tests.delivery_fixtures import wait_for_queue
from tests.helpers import Received

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture(name="topics")
def topics_fixture(app):
    """Three sections readers can choose among (created per test; nothing is seeded)."""
    with session_scope() as session:
        for position, (slug, name) in enumerate(
            (("agents", "Agents"), ("models", "Models"), ("tools", "Tools"))
        ):
            session.add(Tag(slug=slug, name=name, position=position, is_section=True))
        session.add(Tag(slug="internal", name="Internal", position=9, is_section=False))
    return ["agents", "models", "tools"]


@pytest.fixture
def running_sender(mail_sender, settings):
    """The transactional mail sender runs beside the app, as in ``serve``
    (modules whose tests read the mail use it: ``pytestmark``)."""
    return mail_sender(settings)


def csrf_token(client, path: str = "/") -> str:
    page = client.get(path)
    match = CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_form(client, path: str, data: dict, token_from: str = "/"):
    """POST a form with the CSRF token of the page ``token_from``: ``/`` carries
    the subscribe form's cookie-less token, the other pages their session's."""
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **data})


def confirm(client, path: str):
    """Press the button on a confirmation link's page (opening it changes nothing)."""
    return post_form(client, path, {}, token_from=path)


def subscribe(client, email: str, **fields):
    return post_form(client, "/subscribe", {"email": email, **fields})


def outbox() -> list[Received]:
    """The mail the ``outbox://`` transport kept, once the sender has sent what is queued."""
    wait_for_queue()
    with session_scope() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [Received(r.sender, [r.recipient], r.raw) for r in rows]


def link(mail: Received, kind: str) -> str:
    """The path of the first /<kind>/ link in a mail's text part."""
    for url in mail.links():
        if f"/{kind}/" in url:
            return urlsplit(url).path
    raise AssertionError(f"no {kind} link in {mail.text!r}")


def reader(email: str) -> Subscriber | None:
    with session_scope() as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def events(kind: str) -> list[Event]:
    with session_scope() as session:
        return list(session.exec(select(Event).where(Event.kind == kind)).all())
