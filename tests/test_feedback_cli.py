"""The feedback commands: suppress/unsuppress, outcomes, poll-bounces."""

from __future__ import annotations

import json

import pytest

from newsletter import db
from newsletter.suppression import is_suppressed
from tests.feedback_fixtures import make_delivery, make_issue, make_subscriber

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database


def test_suppress_unsuppress_outcomes_and_poll(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["subscribers", "suppress", "Spam.Trap@Example.org"])
    assert r.exit_code == 0, r.output
    with db.session_scope() as s:
        assert is_suppressed(s, "spam.trap@example.org")
    assert runner.invoke(args=["subscribers", "unsuppress", "spam.trap@example.org"]).exit_code == 0
    with db.session_scope() as s:
        assert not is_suppressed(s, "spam.trap@example.org")
    assert runner.invoke(args=["subscribers", "unsuppress", "spam.trap@example.org"]).exit_code == 1

    issue = make_issue(12)
    make_delivery(issue, make_subscriber("a@example.org"))
    r = runner.invoke(args=["issue", "outcomes", "12", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["issue"], data["sent"], data["delivered"], data["links"]) == (12, 1, 1, [])
    assert "delivered" in runner.invoke(args=["issue", "outcomes", "12"]).output
    assert runner.invoke(args=["issue", "outcomes", "99"]).exit_code == 1

    r = runner.invoke(args=["subscribers", "poll-bounces"])
    assert r.exit_code != 0 and "NEWSLETTER_BOUNCE_MAILBOX" in r.output
