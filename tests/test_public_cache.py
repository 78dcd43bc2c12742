"""Public pages a CDN can keep: `/`, `/issues`, `/issues/<n>` carry an ETag,
Last-Modified and Cache-Control, answer conditional requests with 304, set no
cookie; their validators are read before rendering and change with what the
page shows (a sent issue, a moved send, the sections, a setting, the form
token's window, the code); and the subscribe form's cookie-less CSRF token
(``form_tokens``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import TimestampSigner

from newsletter import clock, web
from newsletter.content.sections import set_sections
from newsletter.db import session_scope
from newsletter.readers import archive, form_tokens, views
from tests.delivery_fixtures import add_subscribers, make_issue
from tests.readers_fixtures import csrf_token, outbox, reader

SECRET = "form-token-secret-" + "s" * 30


@pytest.fixture(autouse=True)
def _inside_one_token_window():
    """Each test starts ten minutes into a form-token window. The front page
    carries the window's token, so its ETag changes when the window turns
    over; the minutes a test advances must not turn it over unless the test
    means to (run in an hour's last minute, they did)."""
    start = form_tokens.window_start(int(clock.timestamp()))
    clock.set(datetime.fromtimestamp(start + 600, UTC))


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
    feed = _conditional(client, "/issues/feed.xml")
    assert feed.mimetype == "application/atom+xml" and "Issue 001" in feed.get_data(as_text=True)
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


# --- validators read before rendering (web.public_cache) ------------------------------

PAGES = (
    ("/", "readers/index.html"),
    ("/issues", "archive/index.html"),
    ("/issues/1", "archive/issue.html"),
    ("/issues/feed.xml", "archive/feed.xml"),
)


@pytest.fixture
def rendered(monkeypatch):
    """The templates the public views render, in order."""
    names = []
    for module in (archive, views):

        def counting(name, _render=module.render_template, **context):
            names.append(name)
            return _render(name, **context)

        monkeypatch.setattr(module, "render_template", counting)
    return names


def test_a_page_is_rendered_once_per_validator_and_a_304_renders_nothing(
    client, topics, sent_issue, rendered
):
    for path, template in PAGES:
        first = client.get(path)
        assert rendered == [template]
        assert client.get(path).get_data() == first.get_data()
        assert client.get(path, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
        assert (
            client.get(path, headers={"If-Modified-Since": first.headers["Last-Modified"]}).status_code == 304
        )
        assert rendered == [template], f"{path}: the second 200 and the 304s rendered again"
        rendered.clear()


def test_another_process_answers_304_for_the_same_page_without_rendering(
    client, make_app, topics, sent_issue, rendered
):
    """The ETag is made from the data and the code, not from anything one process
    holds: a second worker (or a restart) says 304 to a page it never rendered."""
    etags = {path: client.get(path).headers["ETag"] for path, _ in PAGES}
    rendered.clear()
    other = make_app().test_client()
    for path, etag in etags.items():
        assert other.get(path, headers={"If-None-Match": etag}).status_code == 304, path
    assert rendered == []


def _changed(client, path, before):
    """The page under ``path`` is no longer the one ``before`` was: a 200 to a
    conditional request with either of its validators, and a new ETag."""
    by_etag = client.get(path, headers={"If-None-Match": before.headers["ETag"]})
    by_date = client.get(path, headers={"If-Modified-Since": before.headers["Last-Modified"]})
    assert by_etag.status_code == 200 and by_date.status_code == 200, path
    assert by_etag.headers["ETag"] != before.headers["ETag"]
    return by_etag


def test_a_newly_sent_issue_changes_the_archive(client, make_settings, sent_issue):
    from newsletter.delivery.deliver import deliver

    index, feed = client.get("/issues"), client.get("/issues/feed.xml")
    assert client.get("/issues/2").status_code == 404
    clock.advance(timedelta(minutes=1))
    settings = make_settings()
    make_issue(settings, 2)
    deliver(settings, 2, here=True)
    assert "Issue 002" in _changed(client, "/issues", index).get_data(as_text=True)
    assert "Issue 002" in _changed(client, "/issues/feed.xml", feed).get_data(as_text=True)
    assert client.get("/issues/2").status_code == 200


def test_a_change_to_a_public_issue_changes_its_pages(client, make_settings):
    """An issue in the archive changes when its send moves on (started, paused,
    finished, cancelled): each move writes the issue's row."""
    from newsletter.delivery.send import cancel_sending, pause_issue, start_send

    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 2)
    start_send(settings, 1)  # sending: public, and still changing
    before = {path: client.get(path) for path in ("/issues", "/issues/1", "/issues/feed.xml")}
    clock.advance(timedelta(minutes=1))
    pause_issue(1)
    for path, page in before.items():
        _changed(client, path, page)
    index = client.get("/issues")
    clock.advance(timedelta(minutes=1))
    cancel_sending(1)  # no longer public
    assert client.get("/issues/1").status_code == 404
    assert "Issue 001" not in _changed(client, "/issues", index).get_data(as_text=True)


def test_the_sections_change_the_front_page(client, topics):
    """The topics offered keep no time of their own: the Last-Modified of the new
    page is when this process first served it, so If-Modified-Since sees the change."""
    before = client.get("/")
    clock.advance(timedelta(minutes=1))
    with session_scope() as session:
        set_sections(session, ["tools", "agents"])
    after = _changed(client, "/", before).get_data(as_text=True)
    assert 'value="tools"' in after and 'value="models"' not in after


def test_settings_shown_on_a_page_change_its_validator(make_app, topics, sent_issue):
    """A restart with another public URL or other sections (NEWSLETTER_SECTIONS)
    serves other pages under other ETags."""
    first = make_app().test_client()
    home, issue = first.get("/"), first.get("/issues/1")
    clock.advance(timedelta(minutes=1))  # the restart
    other_url = make_app(base_url="https://news.example.org").test_client()
    assert "https://news.example.org/issues/1" in _changed(other_url, "/issues/1", issue).get_data(
        as_text=True
    )
    assert other_url.get("/", headers={"If-None-Match": home.headers["ETag"]}).status_code == 304
    other_sections = make_app(sections=("tools",)).test_client()
    assert other_sections.get("/", headers={"If-None-Match": home.headers["ETag"]}).status_code == 200


def test_a_new_token_window_changes_the_front_page(client, topics):
    before = client.get("/")
    clock.advance(timedelta(seconds=form_tokens.WINDOW_SECONDS))
    after = _changed(client, "/", before)
    assert form_tokens.issue(client.application.config["SECRET_KEY"], "subscribe") in after.get_data(
        as_text=True
    )


def test_a_deploy_changes_every_validator(client, topics, sent_issue, monkeypatch):
    before = {path: client.get(path) for path, _ in PAGES}
    clock.advance(timedelta(minutes=1))
    monkeypatch.setattr(web, "code_digest", lambda: "another-build")
    restarted = client.application.test_client()
    restarted.application.extensions[web.PUBLIC_PAGES] = web.PublicPages()  # a new process: nothing kept
    for path, page in before.items():
        _changed(restarted, path, page)


def test_the_pages_kept_are_bounded():
    pages = web.PublicPages(size=2)
    for etag in ("a", "b", "c"):
        assert pages.body(etag, lambda etag=etag: f"page {etag}") == f"page {etag}".encode()
    assert pages.body("c", lambda: "rendered again") == b"page c"
    assert pages.body("a", lambda: "rendered again") == b"rendered again", "the oldest page was dropped"
