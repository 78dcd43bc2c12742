"""The whole loop, with real parts: readers imported from CSV, an issue sent
over real SMTP with VERP envelope senders, one address refused at send time,
a DSN and an ARF report for the others read back, the readers deleted — and
the next issue skips them, and a re-import refuses them."""

from __future__ import annotations

import io

from sqlmodel import select

from newsletter import db
from newsletter.delivery.deliver import deliver
from newsletter.feedback.mailbox import process_message
from newsletter.feedback.stats import issue_outcomes
from newsletter.models import Delivery, Subscriber
from newsletter.readers.csv_io import import_csv
from newsletter.readers.service import subscribe
from tests.delivery_fixtures import make_issue
from tests.helpers import arf, dsn

CSV = b"email,name,topics\nann@example.org,Ann,\nbob@example.org,Bob,\ncy@example.org,Cy,\n"


def _statuses():
    with db.session_scope() as s:
        return dict(s.exec(select(Subscriber.email, Subscriber.status)).all())


def test_bounced_and_complained_readers_are_skipped_and_cannot_come_back(make_settings, smtp_server):
    settings = make_settings(
        transport=smtp_server.dsn, bounce_return_path="bounces+{token}@signal.example.org"
    )
    db.init_engine(settings.database_url)
    report = import_csv(settings, io.BytesIO(CSV))
    assert (report.imported, report.rejected_total) == (3, 0)

    # issue 1: bob's server refuses him outright (a permanent SMTP failure)
    smtp_server.respond = lambda rcpt: (
        "550 5.1.1 <bob@example.org>: user unknown" if rcpt.startswith("bob") else None
    )
    issue1 = make_issue(settings, 1)
    deliver(settings, 1, here=True)
    received = {m.to: m for m in smtp_server.wait_for(2)}
    assert set(received) == {"ann@example.org", "cy@example.org"}
    # every mail left with its own VERP envelope sender
    assert all(m.mail_from.startswith("bounces+") for m in received.values())

    # later, ann's mailbox bounces (a DSN to her envelope sender), cy reports spam (ARF)
    ann, cy = received["ann@example.org"], received["cy@example.org"]
    assert process_message(settings, dsn("ann@example.org", ann.mail_from)) == 1
    assert process_message(settings, arf("cy@example.org", cy.mail_from)) == 1
    assert _statuses() == {
        "ann@example.org": "bounced",
        "bob@example.org": "bounced",
        "cy@example.org": "complained",
    }
    with db.session_scope() as s:
        outcomes = issue_outcomes(s, issue1)
    assert (outcomes["sent"], outcomes["failed"], outcomes["bounced"], outcomes["complained"]) == (2, 1, 2, 1)
    assert outcomes["delivered"] == 1  # ann's was accepted, then bounced

    # the readers are deleted outright; the suppression list remembers (hashed)
    with db.session_scope() as s:
        for row in s.exec(select(Subscriber)).all():
            s.delete(row)
    report = import_csv(settings, io.BytesIO(CSV))
    assert report.imported == 0 and report.rejected_total == 3
    assert all("suppress" in reason for _, reason in report.rejected)
    assert (
        subscribe(settings, email="bob@example.org", consent_text="yes", source="api").result == "suppressed"
    )
    assert _statuses() == {}

    # a new reader arrives; issue 2 goes to them alone
    import_csv(settings, io.BytesIO(b"email\ndan@example.org\n"))
    smtp_server.messages.clear()
    smtp_server.respond = None
    issue2 = make_issue(settings, 2)
    deliver(settings, 2, here=True)
    assert [m.to for m in smtp_server.wait_for(1)] == ["dan@example.org"]
    with db.session_scope() as s:
        emails = s.exec(select(Delivery.email).where(Delivery.issue_id == issue2)).all()
    assert emails == ["dan@example.org"]
