"""Test sends: the issue as a reader will get it, to a few editors' addresses.

Rendered fresh (``render_variant``, nothing stored), subject prefixed with
``[TEST]``, sent through the configured transport, and no delivery rows: a
test send never counts as (or blocks) the real send. The unsubscribe link
points at no reader (subscriber id 0), so clicking it in a test mail cannot
unsubscribe anybody.
"""

from __future__ import annotations

from dataclasses import replace

from newsletter.addresses import InvalidAddress, normalise_email
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.delivery.messages import build_issue_message
from newsletter.delivery.transports import SendResult, TransportError, make_transport
from newsletter.issues.service import require_issue
from newsletter.rendering.issue import issue_sections, render_variant, variant_for
from newsletter.rendering.personalise import personalise

MAX_TEST_ADDRESSES = 10  # the editor's form and the CLI alike


class _To:
    def __init__(self, email: str, issue_number: int):
        self.id = None
        self.email = email
        self.name = ""
        self.issue_number = issue_number


def send_test(
    settings: Settings, number: int, addresses: list[str], *, topics: str | None = None
) -> list[SendResult]:
    if not addresses:
        raise ValueError("give at least one address")
    if len(addresses) > MAX_TEST_ADDRESSES:
        raise ValueError(f"at most {MAX_TEST_ADDRESSES} addresses per test send")
    clean = []
    for raw in addresses:
        try:
            clean.append(normalise_email(raw, replace(settings, check_deliverability=False)))
        except InvalidAddress as exc:
            raise ValueError(f"{raw!r}: {exc}") from None
    with session_scope() as session:
        issue = require_issue(session, number)
        variant = variant_for(topics or "", issue_sections(session, issue))
        render = render_variant(session, issue, variant, settings)
        session.expunge_all()
    personalised = personalise(render, settings, subscriber_id=0)
    personalised.subject = f"[TEST] {personalised.subject}"
    messages = [
        build_issue_message(settings, personalised, delivery=_To(a, number), kind="test") for a in clean
    ]
    transport = make_transport(settings.transport, settings)
    try:
        return transport.send(messages)
    except TransportError as exc:
        return [SendResult("transient", error=str(exc)) for _ in messages]
    finally:
        transport.close()
