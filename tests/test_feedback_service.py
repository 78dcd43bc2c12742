"""The bounce/complaint policy: one place, configurable, survives deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from newsletter import clock, db
from newsletter.feedback import service
from newsletter.models import Delivery, Event, Subscriber
from newsletter.suppression import is_suppressed, suppression_reason
from tests.feedback_fixtures import make_delivery, make_issue, make_subscriber

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database


def _status(sid):
    with db.session_scope() as s:
        return s.get(Subscriber, sid).status


def test_hard_bounce_marks_bounced_suppresses_and_records_event(settings):
    sid = make_subscriber("ann@example.org")
    iid = make_issue()
    did = make_delivery(iid, sid, provider_message_id="pm-1")
    with db.session_scope() as s:
        delivery = service.find_delivery_by_provider_id(s, "pm-1")
        out = service.record_bounce(
            s,
            settings,
            delivery=delivery,
            provider="postmark",
            hard=True,
            detail="HardBounce: mailbox unknown",
        )
        assert out.suppressed and out.delivery_id == did and out.subscriber_id == sid
    assert _status(sid) == "bounced"
    with db.session_scope() as s:
        assert is_suppressed(s, "ANN@example.org")
        assert suppression_reason(s, "ann@example.org") == "hard_bounce"
        ev = s.exec(select(Event)).one()
        assert (ev.kind, ev.issue_id, ev.subscriber_id, ev.delivery_id, ev.provider) == (
            "bounce_hard",
            iid,
            sid,
            did,
            "postmark",
        )
        # the same bounce reported twice (webhook and DSN mailbox) counts once
        again = service.record_bounce(
            s, settings, delivery=s.get(Delivery, did), provider="dsn", hard=True, detail="550"
        )
        assert again.duplicate
    with db.session_scope() as s:
        assert len(s.exec(select(Event)).all()) == 1


def test_soft_bounces_suppress_after_limit_within_window(make_settings):
    settings = make_settings(soft_bounce_limit=3, soft_bounce_days=10)
    sid = make_subscriber("bob@example.org")
    clock.set(datetime(2026, 1, 1, tzinfo=UTC))
    with db.session_scope() as s:
        assert not service.record_bounce(
            s, settings, email="bob@example.org", provider="x", hard=False, detail="mailbox full"
        ).suppressed
    clock.advance(timedelta(days=11))  # the first one falls out of the window
    with db.session_scope() as s:
        for _ in range(2):
            assert not service.record_bounce(
                s, settings, email="bob@example.org", provider="x", hard=False, detail="full"
            ).suppressed
    assert _status(sid) == "active"
    clock.advance(timedelta(days=1))
    with db.session_scope() as s:
        out = service.record_bounce(
            s, settings, email="bob@example.org", provider="x", hard=False, detail="full"
        )
        assert out.suppressed
        assert suppression_reason(s, "bob@example.org") == "soft_bounce"
    assert _status(sid) == "bounced"


def test_soft_bounce_limit_is_configurable(make_settings):
    settings = make_settings(soft_bounce_limit=1)
    sid = make_subscriber("cy@example.org")
    with db.session_scope() as s:
        assert service.record_bounce(
            s, settings, email="cy@example.org", provider="x", hard=False, detail="4.2.2"
        ).suppressed
    assert _status(sid) == "bounced"


def test_complaint_marks_complained_and_survives_deletion(settings):
    sid = make_subscriber("dee@example.org")
    iid = make_issue()
    did = make_delivery(iid, sid)
    with db.session_scope() as s:
        out = service.record_complaint(s, delivery=s.get(Delivery, did), provider="ses", detail="abuse")
        assert out.suppressed
    assert _status(sid) == "complained"
    # a later hard bounce does not downgrade the complaint
    with db.session_scope() as s:
        service.record_bounce(s, settings, email="dee@example.org", provider="x", hard=True, detail="550")
    assert _status(sid) == "complained"
    with db.session_scope() as s:
        s.delete(s.get(Subscriber, sid))
    with db.session_scope() as s:
        assert is_suppressed(s, "dee@example.org")
        assert suppression_reason(s, "dee@example.org") == "complaint"


def test_unknown_address_is_still_suppressed_and_nothing_unknown_is_matched(settings):
    with db.session_scope() as s:
        out = service.record_bounce(
            s, settings, email="stranger@example.org", provider="x", hard=True, detail=""
        )
        assert out.suppressed and out.subscriber_id is None
        assert is_suppressed(s, "stranger@example.org")
        none = service.record_complaint(s, provider="x", detail="")
        assert not none.matched and not none.suppressed


def test_provider_id_variants(settings):
    sid = make_subscriber("eve@example.org")
    iid = make_issue()
    did = make_delivery(iid, sid, provider_message_id="<20240101.1@mg.example.org>")
    sid2 = make_subscriber("fay@example.org")
    did2 = make_delivery(iid, sid2, provider_message_id="14c5d75ce93.dfd.64b469")
    with db.session_scope() as s:
        assert service.find_delivery_by_provider_id(s, "20240101.1@mg.example.org").id == did
        assert (
            service.find_delivery_by_provider_id(s, "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0").id
            == did2
        )
        assert service.find_delivery_by_provider_id(s, "nope") is None
        assert service.find_delivery_by_provider_id(s, "") is None


def test_verp_addresses_name_one_delivery_and_cannot_be_forged(make_settings):
    import pytest

    from newsletter.config import ConfigError
    from newsletter.feedback.verp import delivery_ids_in, verp_address

    assert verp_address(make_settings(), 5) == ""  # VERP off: the transport uses the From address
    settings = make_settings(bounce_return_path="Bounces+{token}@Signal.example.org")
    address = verp_address(settings, 5)
    assert address.startswith("Bounces+5.") and address.endswith("@Signal.example.org")
    assert delivery_ids_in(settings, f"To: <{address}>") == [5]
    assert delivery_ids_in(settings, f"To: <{address.lower()}>") == []  # the signature is case-sensitive
    token = address.split("+", 1)[1].split("@")[0]
    assert delivery_ids_in(settings, f"bounces+6.{token.split('.', 1)[1]}@signal.example.org") == []
    assert (
        delivery_ids_in(
            make_settings(bounce_return_path="b+{token}@x.org", secret_key="k" * 40),
            address.replace("Bounces", "b").replace("Signal.example", "x"),
        )
        == []
    )
    for bad in ("bounces@example.org", "bounces+{token}", "{token}"):
        with pytest.raises(ConfigError):
            make_settings(bounce_return_path=bad)
