"""Public pages a CDN can keep: `/`, `/issues`, `/issues/<n>` carry an ETag,
Last-Modified and Cache-Control, answer conditional requests with 304, set no
cookie; and the subscribe form's cookie-less CSRF token (``form_tokens``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner

from newsletter import clock
from newsletter.readers import form_tokens
from tests.delivery_fixtures import add_subscribers, make_issue
from tests.readers_fixtures import csrf_token, outbox, reader

SECRET = "form-token-secret-" + "s" * 30


@pytest.fixture
def sent_issue(make_settings):
    from newsletter.delivery.deliver import deliver

    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 2)
    deliver(settings, 1, here=True)
    return 1


def _conditional(client, path):
    first = client.get(path)
    assert first.status_code == 200, path
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert "Set-Cookie" not in first.headers, f"{path} sets a cookie: it cannot be shared"
    control = first.headers["Cache-Control"]
    assert control.startswith("public, max-age=") and "stale-while-revalidate=" in control
    same = client.get(path, headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.get_data() == b""
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200
    older = client.get(path, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert older.status_code == 200
    return first


def test_public_pages_are_cacheable_and_answer_304(client, topics, sent_issue):
    home = _conditional(client, "/")
    assert home.headers["Cache-Control"] == "public, max-age=300, stale-while-revalidate=3600"
    assert client.get("/").get_data() == home.get_data(), "every visitor gets the same page"
    _conditional(client, "/issues")
    issue = _conditional(client, "/issues/1")
    assert issue.headers["Cache-Control"] == "public, max-age=3600, stale-while-revalidate=86400"
    assert client.get("/issues/2").status_code == 404


def test_a_visitor_with_a_session_gets_a_private_copy(client, topics):
    client.set_cookie("session", "anything")
    page = client.get("/")
    assert page.headers["Cache-Control"] == "private, no-cache"
    assert client.get("/", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304


def test_the_cached_form_still_subscribes(client, topics):
    """The token in a page kept by a cache works for any visitor; the page set no cookie."""
    token = csrf_token(client.application.test_client())
    answer = client.post(
        "/subscribe",
        data={"email": "cached@example.org", "csrf_token": token, "topics": ["agents"]},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 302
    assert reader("cached@example.org") is not None


def test_form_tokens_are_signed_per_form_and_expire():
    token = form_tokens.issue(SECRET, "subscribe")
    form_tokens.check_token(SECRET, "subscribe", token)
    assert form_tokens.issue(SECRET, "subscribe") == token, "the same for everyone in a window"
    for bad, kind in (
        ("", "missing"),
        (token[:-2] + "xx", "invalid"),
        (token.replace("subscribe", "subscribf"), "invalid"),
        (form_tokens.issue(SECRET, "embed"), "invalid"),  # another form's token
        (form_tokens.issue("another-secret-" + "x" * 30, "subscribe"), "invalid"),
        ("subscribe.garbage.garbage", "invalid"),
        ("\r\nSet-Cookie: x=1", "invalid"),
    ):
        with pytest.raises(form_tokens.FormTokenError, match=kind):
            form_tokens.check_token(SECRET, "subscribe", bad)
    # a genuine token from seven hours ago has expired
    old = TimestampSigner(SECRET, salt="form-token:subscribe")
    old.get_timestamp = lambda: int(clock.now().timestamp()) - 7 * 3600
    with pytest.raises(form_tokens.FormTokenExpired):
        form_tokens.check_token(SECRET, "subscribe", old.sign("subscribe").decode())


def test_a_token_outlives_its_window_by_the_pages_cache_lifetime(monkeypatch):
    start = clock.now()
    token = form_tokens.issue(SECRET, "subscribe")
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(hours=5))
    form_tokens.check_token(SECRET, "subscribe", token)
    assert form_tokens.issue(SECRET, "subscribe") != token, "a new window, a new token"
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(hours=7, minutes=1))
    with pytest.raises(form_tokens.FormTokenExpired):
        form_tokens.check_token(SECRET, "subscribe", token)


def test_an_expired_form_is_refused_with_the_form_expired_page(client, topics, monkeypatch):
    token = csrf_token(client)
    later = clock.now() + timedelta(hours=8)
    monkeypatch.setattr(clock, "now", lambda: later)
    answer = client.post(
        "/subscribe", data={"email": "late@example.org", "csrf_token": token, "topics": ["agents"]}
    )
    assert answer.status_code == 400 and "Form expired" in answer.get_data(as_text=True)
    assert reader("late@example.org") is None and outbox() == []


def test_origin_checks():
    own = ["https://news.example.org"]
    form_tokens.check_origin({"Sec-Fetch-Site": "same-origin"}, own)
    form_tokens.check_origin({"Sec-Fetch-Site": "none"}, own)
    form_tokens.check_origin({}, own)
    form_tokens.check_origin({"Origin": "https://news.example.org"}, own)
    form_tokens.check_origin(
        {"Origin": "https://shop.example", "Sec-Fetch-Site": "cross-site"}, own, ["https://shop.example"]
    )
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Origin": "https://news.example.org.evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    ):
        with pytest.raises(form_tokens.FormTokenError, match="another site"):
            form_tokens.check_origin(headers, own)
