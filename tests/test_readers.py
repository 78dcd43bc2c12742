"""The reader's path through the web pages, with mail kept in the outbox."""

from __future__ import annotations

import json

import pytest

from newsletter.db import session_scope
from newsletter.models import Delivery, Issue, Subscriber
from newsletter.readers import links, service
from newsletter.suppression import is_suppressed, suppress
from tests.delivery_fixtures import wait_for_queue
from tests.readers_fixtures import confirm, events, link, outbox, post_form, reader, subscribe

pytestmark = pytest.mark.usefixtures("running_sender")  # the mail sender runs, as in `serve`


def test_front_page_offers_sections_in_order_with_labels(client, topics):
    page = client.get("/").get_data(as_text=True)
    assert page.index("Agents") < page.index("Models") < page.index("Tools")
    assert "Internal" not in page  # a tag that is not a section is not a topic
    assert '<label for="email">Email address</label>' in page
    assert 'class="hp"' in page
    assert "AI agent intel, delivered weekly" in page


def test_subscribe_confirm_welcome_and_consent_record(client, topics, settings):
    response = subscribe(client, "  Ada@Example.ORG ", name="Ada", topics=["agents", "tools"])
    assert response.status_code == 302 and response.location.endswith("/subscribe/check-your-inbox")
    sub = reader("ada@example.org")
    assert sub.status == "pending" and sub.name == "Ada" and sub.topics == "agents,tools"
    assert sub.consent_source == "form" and sub.consent_text == service.CONSENT_TEXT and sub.consent_at
    assert sub.consent_ip is None  # store_ip is off by default
    [mail] = outbox()
    assert mail.to == "ada@example.org" and "Confirm" in mail.message["Subject"]
    assert "<mj-" not in mail.html and "Yes, subscribe me" in mail.html
    assert "fonts.googleapis" not in mail.html

    for _ in range(2):  # link scanners and previews open the link: nothing happens
        shown = client.get(link(mail, "confirm"))
        assert shown.status_code == 200 and "Yes, subscribe me</button>" in shown.get_data(as_text=True)
        assert client.head(link(mail, "confirm")).status_code == 200
    assert reader("ada@example.org").status == "pending" and len(outbox()) == 1
    page = confirm(client, link(mail, "confirm"))
    assert page.status_code == 200 and "subscribed, Ada" in page.get_data(as_text=True)
    assert reader("ada@example.org").status == "active"
    welcome = outbox()[1]
    assert "Welcome" in welcome.message["Subject"]
    assert "Agents, Tools" in welcome.text
    assert welcome.message["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")

    again = confirm(client, link(mail, "confirm"))  # a double click: harmless
    assert again.status_code == 200 and len(outbox()) == 2
    assert [e.kind for e in events("subscribe")] == ["subscribe"] and len(events("confirm")) == 1


def test_all_topics_ticked_means_everything(client, topics):
    subscribe(client, "all@example.org", topics=topics)
    assert reader("all@example.org").topics == ""


def test_store_ip_only_when_enabled(make_app, topics):
    client = make_app(store_ip=True).test_client()
    subscribe(client, "ip@example.org", topics=["agents"])
    assert reader("ip@example.org").consent_ip == "127.0.0.1"


def test_same_answer_for_new_pending_active_and_suppressed(client, topics):
    with session_scope() as session:
        session.add(Subscriber(email="active@example.org", email_hash="x", status="active"))
        suppress(session, "gone@example.org", "erased")
    subscribe(client, "pending@example.org", topics=["agents"])
    answers = set()
    for address in ("new@example.org", "pending@example.org", "active@example.org", "gone@example.org"):
        response = subscribe(client, address, topics=["agents"])
        answers.add((response.status_code, response.location))
    assert answers == {(302, "/subscribe/check-your-inbox")}
    assert reader("gone@example.org") is None
    mails = outbox()
    sent_to = [m.to for m in mails]
    assert "gone@example.org" not in sent_to
    assert sent_to.count("pending@example.org") == 2  # a fresh link for someone who lost the first
    # the active reader is told, privately, that nothing changed, with their preferences link (issue 19)
    [told] = [m for m in mails if m.to == "active@example.org"]
    assert "already subscribed" in told.text and "/preferences/" in told.text and "/confirm/" not in told.text


def test_third_party_cannot_change_an_active_readers_topics(client, topics, settings):
    service.subscribe(
        settings,
        email="bo@example.org",
        topics=["agents"],
        double_opt_in=False,
        source="editor",
        consent_text="added by editor",
    )
    subscribe(client, "bo@example.org", name="Mallory", topics=["tools"])
    sub = reader("bo@example.org")
    assert sub.topics == "agents" and sub.name == ""


def test_preferences_change_topics_and_name(client, topics, settings):
    subscribe(client, "cy@example.org", topics=["agents"])
    confirm(client, link(outbox()[0], "confirm"))
    prefs = link(outbox()[1], "preferences")
    page = client.get(prefs).get_data(as_text=True)
    assert (
        "cy@example.org" in page
        and '<input checked id="topics-0" name="topics" type="checkbox" value="agents">' in page
    )
    response = post_form(client, prefs, {"name": "Cy Young", "topics": ["models", "tools"]}, token_from=prefs)
    assert response.status_code == 302
    sub = reader("cy@example.org")
    assert sub.name == "Cy Young" and sub.topics == "models,tools"
    assert "Your preferences are saved" in client.get(prefs).get_data(as_text=True)
    none = post_form(client, prefs, {"name": "Cy", "topics": []}, token_from=prefs)
    assert none.status_code == 400 and "Choose at least one topic" in none.get_data(as_text=True)


def test_export_my_data_as_json(client, topics, settings):
    subscribe(client, "dee@example.org", name="Dee", topics=["models"])
    confirm(client, link(outbox()[0], "confirm"))
    with session_scope() as session:
        from datetime import UTC, datetime

        issue = Issue(
            number=1,
            title="Issue 001",
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 8, tzinfo=UTC),
            status="sent",
        )
        session.add(issue)
        session.flush()
        sid = reader("dee@example.org").id
        session.add(Delivery(issue_id=issue.id, subscriber_id=sid, email="dee@example.org", status="sent"))
    prefs = link(outbox()[1], "preferences")
    response = post_form(client, prefs + "/export", {}, token_from=prefs)
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["email"] == "dee@example.org" and data["name"] == "Dee" and data["topics"] == ["models"]
    assert data["consent"]["source"] == "form" and data["consent"]["text"] == service.CONSENT_TEXT
    assert [e["kind"] for e in data["events"]] == ["subscribe", "confirm"]
    assert data["issues_sent"] == [{"issue": 1, "status": "sent", "sent_at": None}]


def test_erase_deletes_everything_and_blocks_resubscription(client, topics, settings):
    subscribe(client, "eve@example.org", topics=["agents"])
    confirm(client, link(outbox()[0], "confirm"))
    prefs = link(outbox()[1], "preferences")
    unsub = link(outbox()[1], "unsubscribe")
    refused = post_form(client, prefs + "/erase", {}, token_from=prefs)
    assert refused.status_code == 400 and "Tick the box" in refused.get_data(as_text=True)
    assert reader("eve@example.org") is not None

    done = post_form(client, prefs + "/erase", {"confirm": "y"}, token_from=prefs)
    assert done.status_code == 200 and "erased" in done.get_data(as_text=True)
    assert reader("eve@example.org") is None
    assert outbox() == []  # stored copies of mail to them are gone too
    with session_scope() as session:
        assert is_suppressed(session, "eve@example.org")
    assert len(events("erase")) == 1 and events("subscribe") == []
    # Old links say plainly that nothing is held; the form answers as usual and sends nothing.
    assert "hold nothing" in client.get(prefs).get_data(as_text=True)
    assert client.post(unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert subscribe(client, "Eve@example.org", topics=["agents"]).status_code == 302
    assert reader("eve@example.org") is None and outbox() == []
    outcome = service.subscribe(
        settings, email="eve@example.org", source="import", consent_text="", double_opt_in=False
    )
    assert outcome.result == "suppressed"


def test_unsubscribe_page_never_unsubscribes_by_itself(client, topics, settings):
    subscribe(client, "fay@example.org", topics=["agents"])
    confirm(client, link(outbox()[0], "confirm"))
    unsub = link(outbox()[1], "unsubscribe")
    for _ in range(3):
        page = client.get(unsub)
        assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    assert reader("fay@example.org").status == "active"

    response = post_form(client, unsub, {}, token_from=unsub)
    assert response.status_code == 200 and "unsubscribed" in response.get_data(as_text=True)
    sub = reader("fay@example.org")
    assert sub.status == "unsubscribed" and sub.unsubscribed_at is not None
    assert post_form(client, unsub, {}, token_from=unsub).status_code == 200  # idempotent
    assert len(events("unsubscribe")) == 1


def test_one_click_unsubscribe_without_cookie_or_csrf(make_app, topics, settings):
    app = make_app()
    sid = service.subscribe(
        settings, email="gus@example.org", source="import", consent_text="", double_opt_in=False
    ).subscriber_id
    url = links.unsubscribe_url(settings, sid).removeprefix(settings.base_url)
    fresh = app.test_client(use_cookies=False)
    response = fresh.post(
        url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200 and "Location" not in response.headers
    assert reader("gus@example.org").status == "unsubscribed"
    assert events("unsubscribe")[0].detail == "one-click"
    assert (
        fresh.post(
            url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        ).status_code
        == 200
    )


def test_resubscribe_after_unsubscribe_but_not_after_suppression(client, topics, settings):
    subscribe(client, "hal@example.org", topics=["agents"])
    confirm(client, link(outbox()[0], "confirm"))
    unsub, prefs = link(outbox()[1], "unsubscribe"), link(outbox()[1], "preferences")
    page = post_form(client, unsub, {}, token_from=unsub).get_data(as_text=True)
    assert "Email me my preferences link" in page and "/preferences/" not in page
    assert "You are unsubscribed" in client.get(prefs).get_data(as_text=True)
    back = post_form(client, prefs + "/resubscribe", {}, token_from=prefs)
    assert back.status_code == 302 and reader("hal@example.org").status == "active"

    post_form(client, unsub, {}, token_from=unsub)
    with session_scope() as session:
        suppress(session, "hal@example.org", "complaint")
    page = client.get(prefs).get_data(as_text=True)
    assert "can no longer send to this address" in page and "Resubscribe</button>" not in page
    post_form(client, prefs + "/resubscribe", {}, token_from=prefs)
    assert reader("hal@example.org").status == "unsubscribed"


def test_subscribing_again_after_unsubscribe_needs_a_new_confirmation(client, topics, settings):
    subscribe(client, "ian@example.org", topics=["agents"])
    first = link(outbox()[0], "confirm")
    confirm(client, first)
    post_form(client, link(outbox()[1], "unsubscribe"), {}, token_from=link(outbox()[1], "unsubscribe"))
    # The old confirmation link (issued before they left) must not bring them back.
    stale = confirm(client, first)
    assert stale.status_code == 410 and "out of date" in stale.get_data(as_text=True)
    assert reader("ian@example.org").status == "unsubscribed"
    from datetime import timedelta

    from newsletter import clock

    clock.advance(timedelta(seconds=2))
    subscribe(client, "ian@example.org", topics=["tools"])
    assert reader("ian@example.org").status == "unsubscribed"  # someone else could have typed it
    fresh = link(outbox()[-1], "confirm")
    assert confirm(client, fresh).status_code == 200
    assert reader("ian@example.org").status == "active" and reader("ian@example.org").topics == "tools"


def test_outbox_needs_an_admin_login_in_every_configuration(make_app, topics):
    for env, base_url in (("development", "http://localhost:5000"), ("testing", "http://localhost"),
                          ("production", "https://news.example.org")):  # fmt: skip
        app = make_app(env=env, base_url=base_url)
        client = app.test_client()
        subscribe(client, f"jo-{env}@example.org", topics=["agents"])
        wait_for_queue()
        for path in ("/outbox", "/outbox/1", "/outbox/1/html"):
            shown = client.get(path, follow_redirects=True)
            page = shown.get_data(as_text=True)
            assert shown.request.path == "/editor/login", (env, path)
            assert "jo-" not in page and "/confirm/" not in page
        assert client.get("/editor/outbox/1/body.html").status_code == 302


def test_a_new_link_by_address_leads_forward_and_stays_capped(client, topics, settings):
    """From a broken preferences or unsubscribe link (issue 19): an active reader gets
    their preferences link, at most NEWSLETTER_CONFIRM_MAX_PER_DAY a day; an unknown
    or malformed address gets nothing; every answer is the same page."""
    with session_scope() as session:
        session.add(Subscriber(email="active@example.org", email_hash="x", status="active"))
    broken = client.get("/preferences/not-a-token")
    assert broken.status_code == 400 and "Send me a new link" in broken.get_data(as_text=True)
    answers = set()
    for address in ["nobody@example.org", "not an address", "a@b\r\nBcc: x@y.z", "active@example.org"]:
        response = post_form(
            client, "/confirm/new", {"email": address}, token_from="/preferences/not-a-token"
        )
        answers.add((response.status_code, response.location))
    assert answers == {(302, "/subscribe/check-your-inbox")}  # the same page, whoever asks
    for _ in range(5):  # asking again and again: slowed down (429) or silently capped, never more mail
        response = post_form(
            client, "/confirm/new", {"email": "active@example.org"}, token_from="/subscribe/check-your-inbox"
        )
        assert response.status_code in (302, 429)
    mails = outbox()
    assert 1 <= len(mails) <= settings.confirm_max_per_day and {m.to for m in mails} == {"active@example.org"}
    assert all("/preferences/" in m.text and "/confirm/" not in m.text for m in mails)
