"""The bounce mailbox against a real IMAP server: a private Dovecot on
loopback holding real RFC 3464 DSNs and an RFC 5965 (ARF) complaint."""

from __future__ import annotations

import imaplib
import time

import pytest
from sqlmodel import select

from newsletter import db
from newsletter.feedback.mailbox import parse_mailbox_url, poll_bounce_mailbox
from newsletter.feedback.verp import verp_address
from newsletter.models import Event, Subscriber
from newsletter.suppression import is_suppressed
from tests.feedback_fixtures import PASSWORD, make_delivery, make_issue, make_subscriber, status_of
from tests.helpers import arf, dsn

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database

RETURN_PATH = "bounces+{token}@signal.example.org"


def append(url: str, raw: bytes, flags: str = "") -> None:
    box = parse_mailbox_url(url)
    conn = imaplib.IMAP4(box.host, box.port)
    conn.login(box.user, box.password)
    typ, _ = conn.append("INBOX", flags or None, imaplib.Time2Internaldate(time.time()), raw)
    assert typ == "OK"
    conn.logout()


def flags_of_all(url: str) -> list[bytes]:
    box = parse_mailbox_url(url)
    conn = imaplib.IMAP4(box.host, box.port)
    conn.login(box.user, box.password)
    conn.select("INBOX")
    typ, data = conn.fetch("1:*", "(FLAGS)")
    conn.logout()
    return [d for d in data if d]


# --- real messages ---------------------------------------------------------------------


def autoreply(envelope_to: str) -> bytes:
    return (
        f"From: ann@example.org\r\nTo: {envelope_to}\r\nSubject: Out of office\r\n"
        f"Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n"
    ).encode()


BROKEN = (
    b'From: x@example.net\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="Q"\r\n'
    b"\r\n--Q\r\nContent-Type: message/delivery-status\r\n\r\nAction failed\r\n\r\n"
    b"Final-Recipient: ;;;\r\nAction: failed\r\n--Q\r\nContent-Type: message/rfc822\r\n\r\n"
)


# --- tests --------------------------------------------------------------------------------


def _events():
    with db.session_scope() as s:
        return [(e.kind, e.delivery_id, e.provider) for e in s.exec(select(Event).order_by(Event.id))]


def test_dsns_and_arf_over_imap_map_to_exactly_one_delivery(make_settings, dovecot):
    settings = make_settings(bounce_mailbox=dovecot, bounce_return_path=RETURN_PATH, soft_bounce_limit=2)
    issue = make_issue(45)
    people = ["ann@example.org", "bob@example.org", "cy@example.org", "dee@example.org"]
    d = {e: make_delivery(issue, make_subscriber(e)) for e in people}
    verp = {e: verp_address(settings, d[e]) for e in people}
    assert verp["ann@example.org"].startswith("bounces+") and verp["ann@example.org"].endswith(
        "@signal.example.org"
    )

    append(dovecot, dsn("ann@example.org", verp["ann@example.org"]))  # hard
    append(
        dovecot,
        dsn(
            "bob@example.org",
            verp["bob@example.org"],
            action="delayed",
            status="4.4.1",
            diagnostic="X-Postfix; connect to mx2.example.net: Connection timed out",
        ),
    )  # soft
    append(dovecot, arf("cy@example.org", verp["cy@example.org"]))  # complaint
    append(dovecot, autoreply(verp["dee@example.org"]))  # not a bounce
    append(dovecot, BROKEN)  # malformed: skipped, marked, never blocks the poll
    # forged: a DSN naming dee, sent to a made-up token (VERP on: ignored)
    forged = RETURN_PATH.replace("{token}", f"{d['dee@example.org']}.forgedsignature")
    append(dovecot, dsn("dee@example.org", forged))
    # a human already opened this one: it is still processed (keyword, not \Seen)
    append(
        dovecot,
        dsn("bob@example.org", verp["bob@example.org"], action="delayed", status="4.2.2"),
        flags="(\\Seen)",
    )

    assert poll_bounce_mailbox(settings) == 3
    assert status_of("ann@example.org") == "bounced"
    assert status_of("bob@example.org") == "active"  # one soft bounce per delivery counts once
    assert status_of("cy@example.org") == "complained"
    assert status_of("dee@example.org") == "active"
    assert sorted(_events()) == sorted(
        [
            ("bounce_hard", d["ann@example.org"], "dsn"),
            ("bounce_soft", d["bob@example.org"], "dsn"),
            ("complaint", d["cy@example.org"], "arf"),
        ]
    )
    with db.session_scope() as s:
        assert is_suppressed(s, "ann@example.org") and is_suppressed(s, "cy@example.org")
        assert not is_suppressed(s, "dee@example.org")

    # everything was marked: a second poll counts nothing twice
    assert all(b"$SignalProcessed" in f and b"\\Seen" in f for f in flags_of_all(dovecot))
    assert poll_bounce_mailbox(settings) == 0
    assert len(_events()) == 3

    # the next week's soft bounce for bob reaches the limit of 2
    d2 = make_delivery(make_issue(46), _sid("bob@example.org"))
    append(dovecot, dsn("bob@example.org", verp_address(settings, d2), action="delayed", status="4.2.2"))
    assert poll_bounce_mailbox(settings) == 1
    assert status_of("bob@example.org") == "bounced"


def _sid(email):
    with db.session_scope() as s:
        return s.exec(select(Subscriber.id).where(Subscriber.email == email)).one()


def test_without_verp_the_failed_address_is_used(make_settings, dovecot):
    settings = make_settings(bounce_mailbox=dovecot)
    make_subscriber("ann@example.org")
    make_subscriber("cy@example.org")
    append(dovecot, dsn("ANN@example.org", "signal@signal.example.org"))
    append(dovecot, arf("cy@example.org", "signal@signal.example.org"))
    assert poll_bounce_mailbox(settings) == 2
    assert status_of("ann@example.org") == "bounced"
    assert status_of("cy@example.org") == "complained"


def test_wrong_password_and_no_mailbox(make_settings, dovecot):
    assert poll_bounce_mailbox(make_settings()) == 0  # not configured: nothing to do
    bad = dovecot.replace(PASSWORD, "wrong")
    with pytest.raises(imaplib.IMAP4.error):
        poll_bounce_mailbox(make_settings(bounce_mailbox=bad))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        BROKEN,
        b"Content-Type: multipart/report\r\n\r\n--",
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=z\r\n\r\n"
        b"--z\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n--z--",
    ],
)
def test_malformed_messages_are_skipped(make_settings, raw):
    from newsletter.feedback.mailbox import process_message

    settings = make_settings(bounce_return_path=RETURN_PATH)
    assert process_message(settings, raw) == 0
    assert process_message(make_settings(), raw) == 0
