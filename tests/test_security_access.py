"""Who may do what (issue 12, items 7, 9 and 10): editor logins counted
atomically and slowed per client, one answer for every refusal, sessions
that end on logout, password change and idleness, the ``editor`` role
seeing no reader's address on any page, clients' addresses taken from a
chain of trusted proxies only, and absurd numbers in any URL answered
404/400, never 500."""

from __future__ import annotations

import http.client
import json
import re
from datetime import timedelta

import pytest
import requests
from sqlmodel import select

from newsletter import clock
from newsletter.db import MAX_INTEGER, session_scope
from newsletter.editor import service
from newsletter.editor.auth import ADMIN_ENDPOINTS
from newsletter.models import Delivery, Editor, Event, LoginThrottle, OutboxMessage
from tests.editor_fixtures import ADMIN, EDITOR, Browser, add_subscriber, csrf_of, login, seed_issue
from tests.helpers import ForwardingProxy, race

# --- logins ----------------------------------------------------------------------------


def _login_as(client_or_session, base: str, email: str, password: str):
    page = client_or_session.get(base + "/editor/login")
    token = csrf_of(page.text)
    return client_or_session.post(
        base + "/editor/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )


def test_ten_concurrent_wrong_passwords_are_all_counted(live_server_factory, make_app, accounts):
    """Ten browsers post a wrong password at the same moment (threads released
    together, against the threaded server): every attempt is counted, the
    first FREE_ATTEMPTS are checked, the rest are told to wait."""
    clock.set(clock.now())  # one instant: the waits do not run out during the race
    server = live_server_factory(make_app)
    browsers = []
    for _ in range(10):
        session = requests.Session()
        token = csrf_of(session.get(server.url + "/editor/login").text)
        browsers.append((session, token))
    answers = [None] * 10

    def attempt(n):
        session, token = browsers[n]
        answers[n] = session.post(
            server.url + "/editor/login",
            data={"email": ADMIN[0], "password": "not the password", "csrf_token": token},
            allow_redirects=False,
        )

    assert race(*[lambda n=n: attempt(n) for n in range(10)]) == [None] * 10
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * service.FREE_ATTEMPTS + [429] * (10 - service.FREE_ATTEMPTS)
    with session_scope() as db:
        [throttle] = db.exec(select(LoginThrottle)).all()
        admin = db.exec(select(Editor).where(Editor.email == ADMIN[0])).one()
    assert throttle.failures == 10 and throttle.blocked_until > clock.now()
    assert admin.failed_logins == service.FREE_ATTEMPTS  # the passwords actually checked
    for session, _ in browsers:
        session.close()


def test_one_answer_for_unknown_wrong_and_slowed(app, accounts):
    def refusal(email, ip):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        r = login(client, email, "a wrong password")
        return r.status_code, re.search(r'role="alert">([^<]*)<', r.get_data(as_text=True)).group(1)

    unknown = refusal("nobody@example.org", "10.0.0.1")
    wrong = refusal(ADMIN[0], "10.0.0.2")
    assert unknown == wrong == (401, service.GENERIC_REFUSAL)
    for _ in range(service.FREE_ATTEMPTS):
        refusal("nobody@example.org", "10.0.0.3")
        refusal(ADMIN[0], "10.0.0.4")
    slowed_unknown = refusal("nobody@example.org", "10.0.0.3")
    slowed_known = refusal(ADMIN[0], "10.0.0.4")
    assert slowed_unknown == slowed_known and slowed_known[0] == 429


def test_a_stranger_cannot_keep_an_admin_out(app, accounts):
    clock.set(clock.now())
    stranger = app.test_client()
    stranger.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for _ in range(8):  # stays under the per-IP request limit, far over FREE_ATTEMPTS
        login(stranger, ADMIN[0], "guess guess guess")
    assert login(stranger, *ADMIN).status_code == 429  # the stranger waits, even with the password
    admin = app.test_client()
    admin.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert login(admin, *ADMIN).status_code == 302  # the admin, elsewhere, does not
    with session_scope() as db:
        assert db.exec(select(Editor.failed_logins).where(Editor.email == ADMIN[0])).one() == 0
    clock.advance(timedelta(seconds=service.MAX_WAIT_SECONDS + 1))
    assert login(stranger, *ADMIN).status_code == 302


def test_waits_double_and_are_capped():
    waits = [service.wait_after(n) for n in range(1, 30)]
    assert waits[: service.FREE_ATTEMPTS - 1] == [0] * (service.FREE_ATTEMPTS - 1)
    assert waits[service.FREE_ATTEMPTS - 1 : service.FREE_ATTEMPTS + 3] == [1, 2, 4, 8]
    assert max(waits) == service.MAX_WAIT_SECONDS


# --- sessions ----------------------------------------------------------------------------


def _copy_session(app, source):
    """A second browser holding a copy of ``source``'s session cookie."""
    thief = app.test_client()
    cookie = source.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    return thief


def test_logout_ends_every_copy_of_the_session(app, accounts):
    client = app.test_client()
    assert login(client, *ADMIN).status_code == 302
    thief = _copy_session(app, client)
    assert thief.get("/editor/dashboard").status_code == 200  # a copied cookie works while logged in
    page = client.get("/editor/dashboard").get_data(as_text=True)
    assert client.post("/editor/logout", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert thief.get("/editor/dashboard").status_code == 302
    assert "/editor/login" in thief.get("/editor/dashboard").headers["Location"]


def test_a_new_password_ends_every_session(app, accounts):
    client = app.test_client()
    login(client, *EDITOR)
    assert client.get("/editor/issues").status_code == 200
    with session_scope() as db:
        editor = db.exec(select(Editor).where(Editor.email == EDITOR[0])).one()
        service.set_password(db, editor, "a brand new password")
    assert client.get("/editor/issues").status_code == 302
    assert login(client, EDITOR[0], "a brand new password").status_code == 302


def test_idle_and_old_sessions_end(make_app, accounts):
    clock.set(clock.now())
    app = make_app(editor_idle_minutes=30, editor_session_hours=2)
    client = app.test_client()
    login(client, *ADMIN)
    clock.advance(timedelta(minutes=29))
    assert client.get("/editor/dashboard").status_code == 200  # activity restarts the idle clock
    clock.advance(timedelta(minutes=29))
    assert client.get("/editor/dashboard").status_code == 200
    clock.advance(timedelta(minutes=31))
    idle = client.get("/editor/dashboard")
    assert idle.status_code == 302 and "/editor/login" in idle.headers["Location"]
    assert "without activity" in client.get(idle.headers["Location"]).get_data(as_text=True)

    login(client, *ADMIN)
    for _ in range(5):  # busy all along, but the session is older than two hours
        clock.advance(timedelta(minutes=25))
        client.get("/editor/dashboard")
    assert client.get("/editor/dashboard").status_code == 302


# --- the editor role sees no reader's address -------------------------------------------------

READERS = ("ann.reader@example.org", "=cmd@example.org", "bob.reader@example.org")


def _seed_addresses(settings):
    """Readers' addresses everywhere an editor page could show them: bounce and
    complaint events (in the detail too), failed deliveries, the outbox."""
    number = seed_issue(settings)
    ids = [add_subscriber(address, name="Reader") for address in READERS]
    with session_scope() as db:
        for sid, address in zip(ids, READERS, strict=True):
            db.add(
                Event(kind="bounce_hard", subscriber_id=sid, detail=f"550 5.1.1 <{address}>: no such user")
            )
            db.add(Event(kind="complaint", subscriber_id=sid, detail=f"abuse report for {address}"))
            db.add(Delivery(issue_id=1, subscriber_id=sid, email=address, status="failed",
                            last_error=f"refused {address}"))  # fmt: skip
            db.add(OutboxMessage(sender="s@example.org", recipient=address, subject=f"To {address}",
                                 message_id="<m@x>", raw=f"To: {address}\r\n\r\nhi".encode()))  # fmt: skip
        db.add(Event(kind="bounce_soft", subscriber_id=None, detail="4.2.2 <gone.reader@example.org> full"))
    return number, ids


def _editor_pages(app, values: dict) -> list[tuple[str, str]]:
    """(endpoint, url) of every GET page of the editor's workspace."""
    pages = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("editor.") or "GET" not in rule.methods:
            continue
        if rule.endpoint in {"editor.login"}:
            continue
        pages.append((rule.endpoint, rule.build({k: values[k] for k in rule.arguments})[1]))
    return pages


def test_the_editor_role_sees_no_readers_address_on_any_page(app, settings, accounts, editor, admin):
    number, ids = _seed_addresses(settings)
    with session_scope() as db:
        message_id = db.exec(select(OutboxMessage.id)).first()
    values = {"number": number, "subscriber_id": ids[0], "message_id": message_id, "editor_id": 1}
    pages = _editor_pages(app, values)
    assert len(pages) >= 15
    shown_to_admin = "".join(admin.get(url, follow_redirects=True).get_data(as_text=True) for _, url in pages)
    assert all(address in shown_to_admin for address in READERS)  # the seed reaches the pages
    for endpoint, url in pages:
        response = editor.get(url, follow_redirects=True)
        body = response.get_data(as_text=True)
        if endpoint in ADMIN_ENDPOINTS:
            assert response.status_code == 403, url
        else:
            assert response.status_code == 200, (url, response.status_code)
        for address in (*READERS, "gone.reader@example.org"):
            assert address not in body and address.split("@")[0] not in body, (url, address)
    dashboard = editor.get("/editor/dashboard").get_data(as_text=True)
    assert "[address hidden]" in dashboard and "bounce hard" in dashboard


# --- behind reverse proxies ------------------------------------------------------------


def _subscribe_from(source: str, url: str, email: str, spoof: str | None = None) -> int:
    """POST /api/v1/subscribers from the local address ``source`` (a real TCP client)."""
    target = requests.utils.urlparse(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if spoof:
        headers["X-Forwarded-For"] = spoof
    try:
        conn.request("POST", "/api/v1/subscribers", body=json.dumps({"email": email}), headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _consent_ip(email: str) -> str | None:
    from newsletter.models import Subscriber

    with session_scope() as db:
        return db.exec(select(Subscriber.consent_ip).where(Subscriber.email == email)).one()


@pytest.fixture
def proxy_chain(live_server_factory, make_app):
    """client 127.0.0.6 → proxy 127.0.0.2 → proxy 127.0.0.3 → the app (from 127.0.0.4)."""
    started = []

    def build(trusted: int, rate: str = "100/minute"):
        server = live_server_factory(
            make_app, trusted_proxies=trusted, store_ip=True, subscribe_rate_limit=rate
        )
        inner = ForwardingProxy(server.url, host="127.0.0.3", source="127.0.0.4")
        outer = ForwardingProxy(inner.url, host="127.0.0.2", source="127.0.0.5")
        started.extend([outer, inner])
        return server, outer

    yield build
    for proxy in started:
        proxy.stop()


def test_the_clients_address_comes_through_a_chain_of_two_trusted_proxies(proxy_chain):
    server, front = proxy_chain(trusted=2)
    assert _subscribe_from("127.0.0.6", front.url, "chain@example.org", spoof="6.6.6.6") == 202
    assert _consent_ip("chain@example.org") == "127.0.0.6"  # not the spoofed hop, not a proxy


def test_a_count_too_small_trusts_the_wrong_hop_and_zero_trusts_none(proxy_chain):
    server, front = proxy_chain(trusted=1)
    _subscribe_from("127.0.0.6", front.url, "one@example.org", spoof="6.6.6.6")
    assert _consent_ip("one@example.org") == "127.0.0.5"  # the outer proxy: a misconfiguration, documented
    server, front = proxy_chain(trusted=0)
    _subscribe_from("127.0.0.6", front.url, "none@example.org", spoof="6.6.6.6")
    assert _consent_ip("none@example.org") == "127.0.0.4"  # X-Forwarded-For ignored by default
    assert _subscribe_from("127.0.0.7", server.url, "direct@example.org", spoof="6.6.6.6") == 202
    assert _consent_ip("direct@example.org") == "127.0.0.7"


def test_rate_limits_count_each_client_behind_the_proxies(proxy_chain):
    server, front = proxy_chain(trusted=2, rate="2/minute")
    codes = [
        _subscribe_from("127.0.0.6", front.url, f"a{n}@example.org", spoof=f"9.9.9.{n}") for n in range(3)
    ]
    assert codes == [202, 202, 429]  # a spoofed header per request does not make a new client
    assert _subscribe_from("127.0.0.8", front.url, "b@example.org") == 202  # another client is not blocked


# --- absurd numbers -----------------------------------------------------------------------

ABSURD = [
    str(MAX_INTEGER + 1),
    str(2**63),
    str(2**64 + 5),
    "9" * 40,
    "-1",
    "0x10",
    "1e3",
    "１２",
    "abc",
    "%20",
]
PARAMETERS = [("/issues", "page"), ("/editor/issues", "before"), ("/editor/articles", "before"),
              ("/editor/subscribers", "before"), ("/editor/outbox", "before")]  # fmt: skip


def _int_routes(app):
    for rule in app.url_map.iter_rules():
        names = [name for name, conv in rule._converters.items() if type(conv).__name__ == "DatabaseInteger"]
        if names:
            yield rule, names


def test_absurd_numbers_in_any_url_are_404_or_400_never_500(app, settings, admin):
    number = seed_issue(settings)
    routes = list(_int_routes(app))
    assert len(routes) >= 20
    clients = {"anonymous": Browser(app.test_client()), "admin": admin}
    for rule, names in routes:
        for value in [*ABSURD, str(MAX_INTEGER)]:
            url = rule.rule
            for name in rule.arguments:
                url = url.replace(f"<int:{name}>", value if name in names else str(number))
                url = re.sub(rf"<(?:\w+:)?{name}>", "x", url)
            for who, client in clients.items():
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    response = client.get(url) if method == "GET" else client.post(url, data={})
                    assert response.status_code < 500, (who, method, url, response.status_code)
                    if who == "admin" and value != str(MAX_INTEGER) and method == "GET":
                        assert response.status_code in (400, 404), (url, response.status_code)
    for path, name in PARAMETERS:
        for value in ABSURD:
            response = admin.get(f"{path}?{name}={value}")
            assert response.status_code in (400, 404), (path, value, response.status_code)
        assert admin.get(f"{path}?{name}={MAX_INTEGER}").status_code in (200, 404)
        assert admin.get(f"{path}?{name}=1").status_code in (200, 404)
    assert clients["anonymous"].get(f"/issues/{MAX_INTEGER}").status_code == 404
    assert clients["anonymous"].get("/issues?page=0").status_code == 404
