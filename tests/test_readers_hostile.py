"""Bad and hostile input on the reader's path: nothing breaks, nothing leaks, nothing is lost."""

from __future__ import annotations

from datetime import timedelta

import pytest

from newsletter import clock, tokens
from newsletter.readers import links, service
from tests.readers_fixtures import csrf_token, link, outbox, post_form, reader, subscribe

pytestmark = pytest.mark.usefixtures("running_sender")  # the mail sender runs, as in `serve`

HOSTILE_ADDRESSES = [
    "",
    "plainaddress",
    "a@b",
    "@example.org",
    "ann@",
    "ann@example..org",
    "ann@example.org\r\nBcc: victim@example.org",
    "ann@example.org\nSubject: hi",
    "ann@example.org%0d%0aBcc:x@example.org",
    '"quoted"@example.org',
    "ann@[127.0.0.1]",
    "ann@localhost",
    "ann@example.test",
    "<script>alert(1)</script>@example.org",
    "a" * 300 + "@example.org",
    "ann@" + "b" * 70 + ".org",
    "ann\x00@example.org",
    "ann @example.org",
]


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_malformed_and_hostile_addresses_get_an_inline_error(client, topics, address):
    response = subscribe(client, address, topics=["agents"])
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'class="error" id="email-error"' in page and 'aria-invalid="true"' in page
    assert "<script>alert(1)</script>" not in page
    assert outbox() == []


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_service_refuses_hostile_addresses(settings, address):
    with pytest.raises(service.InvalidAddress):
        service.normalise_email(address, settings)


@pytest.mark.parametrize(
    "name", ["Ann\r\nBcc: victim@example.org", "Ann\nX", "Ann\rX", "Ann\x00", "Ann\u2028X", "x" * 201]
)
def test_line_breaks_and_control_characters_in_the_name_are_refused(client, topics, settings, name):
    response = subscribe(client, "ann@example.org", name=name, topics=["agents"])
    assert response.status_code == 400 and 'id="name-error"' in response.get_data(as_text=True)
    assert reader("ann@example.org") is None and outbox() == []
    with pytest.raises(service.InvalidInput):
        service.subscribe(settings, email="ann@example.org", name=name, source="api", consent_text="")


def test_unknown_topic_is_refused(client, topics):
    response = subscribe(client, "ann@example.org", topics=["agents", "../../etc"])
    assert response.status_code == 400 and reader("ann@example.org") is None


def test_missing_or_wrong_csrf_token_is_refused(client, topics):
    missing = client.post("/subscribe", data={"email": "ann@example.org", "topics": ["agents"]})
    assert missing.status_code == 400 and "CSRF" in missing.get_data(as_text=True)
    csrf_token(client)  # a session exists, the token is wrong
    wrong = client.post(
        "/subscribe", data={"email": "ann@example.org", "csrf_token": "forged", "topics": ["agents"]}
    )
    assert wrong.status_code == 400
    # The subscribe page is cacheable, so its token is public (the same for every
    # visitor this hour): another site can fetch one. What it cannot do is make a
    # visitor's browser post it — the browser says where the form came from.
    genuine = csrf_token(client.application.test_client())
    data = {"email": "ann@example.org", "csrf_token": genuine, "topics": ["agents"]}
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.localhost"},
        {"Origin": "https://evil.example"},  # an older browser: the Origin alone
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = client.post("/subscribe", data=data, headers=headers)
        assert refused.status_code == 400 and "another site" in refused.get_data(as_text=True), headers
    assert reader("ann@example.org") is None and outbox() == []
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, {}):
        accepted = client.post(
            "/subscribe", data={**data, "email": f"ok{len(headers)}@example.org"}, headers=headers
        )
        assert accepted.status_code == 302, headers


def test_preferences_forms_need_csrf_too(client, topics, settings):
    sid = service.subscribe(
        settings, email="bea@example.org", source="import", consent_text="", double_opt_in=False
    ).subscriber_id
    prefs = links.preferences_url(settings, sid).removeprefix(settings.base_url)
    for path, data in (
        (prefs, {"name": "X", "topics": ["tools"]}),
        (prefs + "/erase", {"confirm": "y"}),
        (prefs + "/export", {}),
        (prefs + "/resubscribe", {}),
    ):
        assert client.post(path, data=data).status_code == 400, path
    assert reader("bea@example.org").name == "" and reader("bea@example.org").topics == ""


def test_honeypot_looks_like_success_and_does_nothing(client, topics):
    response = subscribe(client, "bot@example.org", website="http://spam.example", topics=["agents"])
    assert response.status_code == 302 and response.location.endswith("/subscribe/check-your-inbox")
    assert reader("bot@example.org") is None and outbox() == []


def test_forged_expired_and_wrong_purpose_tokens(client, topics, settings):
    subscribe(client, "cat@example.org", topics=["agents"])
    confirm = link(outbox()[0], "confirm")
    sid = reader("cat@example.org").id

    forged = client.get(confirm[:-3] + "abc")
    assert forged.status_code == 400 and "not valid" in forged.get_data(as_text=True)
    assert client.get("/confirm/" + "x" * 5000).status_code == 400
    unsubscribe_token = links.unsubscribe_token(settings, sid)
    assert client.get(f"/confirm/{unsubscribe_token}").status_code == 400  # wrong purpose
    assert client.get("/unsubscribe/" + confirm.rsplit("/", 1)[1]).status_code == 400
    assert client.get("/preferences/" + unsubscribe_token).status_code == 400
    assert (
        client.post(
            f"/unsubscribe/{links.preferences_token(settings, sid)}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 400
    )
    other_secret = tokens.make_token("another-secret-" + "y" * 30, "unsubscribe", sid)
    assert client.get(f"/unsubscribe/{other_secret}").status_code == 400
    assert reader("cat@example.org").status == "pending"

    assert post_form(client, confirm[:-3] + "abc", {}, token_from=confirm).status_code == 400
    clock.advance(timedelta(days=settings.token_max_age_days, seconds=1))
    assert post_form(client, confirm, {}, token_from="/subscribe/check-your-inbox").status_code == 410
    expired = client.get(confirm)
    page = expired.get_data(as_text=True)
    assert expired.status_code == 410 and "expired" in page and 'name="token"' in page
    assert reader("cat@example.org").status == "pending"
    # The expired page's button sends a fresh link that works.
    token = confirm.rsplit("/", 1)[1]
    again = post_form(client, "/confirm/new", {"token": token}, token_from=confirm)
    assert again.status_code == 302 and len(outbox()) == 2
    fresh = link(outbox()[1], "confirm")
    assert post_form(client, fresh, {}, token_from=fresh).status_code == 200
    assert reader("cat@example.org").status == "active"


def test_oversized_bodies_are_refused(client, topics):
    token = csrf_token(client)
    big = client.post(
        "/subscribe", data={"csrf_token": token, "email": "ann@example.org", "name": "x" * (3 * 1024 * 1024)}
    )
    assert big.status_code == 413
    api = client.post(
        "/api/v1/subscribers",
        data=b'{"email": "' + b"a" * (3 * 1024 * 1024) + b'"}',
        content_type="application/json",
    )
    assert api.status_code == 413 and api.json["error"] == "too large"
    assert reader("ann@example.org") is None


def test_rate_limit_per_client(make_app, topics):
    client = make_app(subscribe_rate_limit="3/minute").test_client()
    codes = [subscribe(client, f"r{i}@example.org", topics=["agents"]).status_code for i in range(5)]
    assert codes == [302, 302, 302, 429, 429]
    assert len(outbox()) == 3


def test_rate_limit_per_address_across_form_and_api(make_app, topics):
    client = make_app(confirm_max_per_day=2).test_client()
    assert subscribe(client, "dan@example.org", topics=["agents"]).status_code == 302
    assert client.post("/api/v1/subscribers", json={"email": "DAN@example.org"}).status_code == 202
    assert subscribe(client, "dan@example.org", topics=["agents"]).status_code == 429
    assert client.post("/api/v1/subscribers", json={"email": "dan@example.org"}).status_code == 429
    assert (
        subscribe(client, "eli@example.org", topics=["agents"]).status_code == 302
    )  # other addresses unaffected


def test_confirmation_cap_holds_across_restarts(make_app, topics, settings):
    """The limiter forgets on restart; the database counter does not."""
    for _ in range(5):  # five "restarts", each a fresh app and limiter
        client = make_app().test_client()
        subscribe(client, "fay@example.org", topics=["agents"])
    assert len(outbox()) == settings.confirm_max_per_day == 3
    assert service.resend_confirmation(settings, email="fay@example.org") is False
    clock.advance(timedelta(days=1, seconds=1))
    assert service.resend_confirmation(settings, email="fay@example.org") is True
    assert len(outbox()) == 4


def test_new_link_form_is_silent_and_capped(client, topics, settings):
    for address in ("nobody@example.org", "not an address"):
        response = post_form(
            client, "/confirm/new", {"email": address}, token_from="/subscribe/check-your-inbox"
        )
        assert response.status_code == 302 and response.location.endswith("/subscribe/check-your-inbox")
    assert outbox() == []


def test_a_malformed_rate_limit_stops_the_start(tmp_path):
    from newsletter.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="NEWSLETTER_SUBSCRIBE_RATE_LIMIT"):
        load_settings(
            environ={"NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "lots", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
        )
