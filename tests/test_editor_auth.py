"""Editor access: accounts, login, lockout, rate limit, CSRF, roles, and a
walk over the whole URL map showing no /editor route serves an anonymous
visitor."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.editor import service
from newsletter.editor.auth import ADMIN_ENDPOINTS
from newsletter.models import Editor
from tests.editor_fixtures import ADMIN, EDITOR, csrf_of, login, make_account


def _concrete(rule) -> str:
    """A URL for a rule, with 1 for every converter."""
    return re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule.rule)


# --- accounts --------------------------------------------------------------------


def test_passwords_are_argon2id_and_verify(app):
    make_account("a@example.org", "long enough password", "admin")
    with session_scope() as s:
        row = s.exec(select(Editor)).one()
    assert row.password_hash.startswith("$argon2id$")
    assert "long enough password" not in row.password_hash
    assert service.authenticate("A@Example.org", "long enough password").ok


def test_password_cost_is_the_library_default_except_under_tests():
    """Production (and development) hash at argon2-cffi's default cost; the test
    environment at Argon2's minimal cost. Each hasher verifies the other's hashes."""
    import argon2

    default = f"$argon2id$v=19$m={argon2.DEFAULT_MEMORY_COST},t={argon2.DEFAULT_TIME_COST},p={argon2.DEFAULT_PARALLELISM}$"
    assert default == "$argon2id$v=19$m=65536,t=3,p=4$"  # the RFC 9106 low-memory profile
    hashes = {
        env: service.password_hasher(env).hash("long enough password")
        for env in ("production", "development", "testing")
    }
    assert hashes["production"].startswith(default) and hashes["development"].startswith(default)
    assert hashes["testing"].startswith("$argon2id$v=19$m=8,t=1,p=1$")
    for env in ("production", "testing"):
        hasher = service.password_hasher(env)
        for hashed in hashes.values():
            assert hasher.verify(hashed, "long enough password")
            with pytest.raises(argon2.exceptions.VerifyMismatchError):
                hasher.verify(hashed, "long enough passwore")


def test_the_app_hashes_at_the_cost_of_its_environment(make_app):
    make_app(env="production", base_url="https://news.example.org")
    make_account("prod@example.org", "long enough password", "admin")
    make_app()  # the tests' settings: env="testing"
    make_account("test@example.org", "long enough password", "editor")
    with session_scope() as s:
        stored = {row.email: row.password_hash for row in s.exec(select(Editor))}
    assert stored["prod@example.org"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert stored["test@example.org"].startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert service.authenticate("prod@example.org", "long enough password").ok
    assert service.authenticate("test@example.org", "long enough password").ok
    assert not service.authenticate("prod@example.org", "long enough passwore").ok


@pytest.mark.parametrize(
    "email,password,role,message",
    [
        ("not-an-address", "long enough password", "editor", "not a valid email"),
        ("x@example.org", "short", "editor", "at least 10"),
        ("x@example.org", "long enough password", "owner", "role must be"),
    ],
)
def test_create_editor_refuses_bad_input(app, email, password, role, message):
    with pytest.raises(service.EditorError, match=message), session_scope() as s:
        service.create_editor(s, email, password, role)


def test_create_editor_refuses_duplicates(app):
    make_account("dup@example.org", "long enough password", "editor")
    with pytest.raises(service.EditorError, match="already exists"), session_scope() as s:
        service.create_editor(s, "DUP@example.org", "another long password", "editor")


def test_cli_creates_editor_from_stdin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["editor", "create", "cli@example.org", "--role", "admin", "--password-stdin"],
        input="cli password 123\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin cli@example.org" in result.output
    assert service.authenticate("cli@example.org", "cli password 123").ok
    again = runner.invoke(
        args=["editor", "create", "cli@example.org", "--password-stdin"], input="cli password 123\n"
    )
    assert again.exit_code != 0 and "already exists" in again.output


def test_cli_prompts_without_echo(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["editor", "create", "prompt@example.org"], input="prompted password\nprompted password\n"
    )
    assert result.exit_code == 0, result.output
    assert "prompted password" not in result.output
    assert service.authenticate("prompt@example.org", "prompted password").ok


# --- login, lockout, logout ----------------------------------------------------------


def test_login_and_logout(app, accounts):
    client = app.test_client()
    response = login(client, *EDITOR)
    assert response.status_code == 302 and response.headers["Location"].endswith("/editor/dashboard")
    assert client.get("/editor/dashboard").status_code == 200
    page = client.get("/editor/issues").get_data(as_text=True)
    # logout is a POST with CSRF: a GET does nothing
    assert client.get("/editor/logout").status_code == 405
    assert client.post("/editor/logout", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert client.get("/editor/dashboard").status_code == 302


def test_session_cookie_is_httponly_and_samesite(app, accounts):
    client = app.test_client()
    response = login(client, *EDITOR)
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_session_cookie_secure_on_https(make_app):
    https_app = make_app(base_url="https://news.example.org")
    assert https_app.config["SESSION_COOKIE_SECURE"] is True


def test_wrong_passwords_slow_this_client_until_the_clock_moves(app, accounts):
    clock.set(clock.now())
    client = app.test_client()
    for _ in range(service.FREE_ATTEMPTS):
        r = login(client, EDITOR[0], "wrong password!!")
        assert r.status_code == 401 and "Wrong email address or password" in r.get_data(as_text=True)
    r = login(client, *EDITOR)  # even the right password waits its turn
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "wait 1 second" in r.get_data(as_text=True)
    clock.advance(timedelta(seconds=2))
    assert login(client, *EDITOR).status_code == 302
    with session_scope() as s:
        row = s.exec(select(Editor).where(Editor.email == EDITOR[0])).one()
        assert row.failed_logins == 0 and row.last_login_at is not None


def test_unknown_address_gets_the_same_message(app, accounts):
    r = login(app.test_client(), "nobody@example.org", "whatever password")
    assert r.status_code == 401 and "Wrong email address or password" in r.get_data(as_text=True)


def test_login_attempts_are_rate_limited(app, accounts):
    client = app.test_client()
    codes = [login(client, f"nobody{n}@example.org", "x" * 12).status_code for n in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429


def test_login_refuses_open_redirect(app, accounts):
    client = app.test_client()
    page = client.get("/editor/login?next=https://evil.example/steal").get_data(as_text=True)
    r = client.post(
        "/editor/login?next=https://evil.example/steal",
        data={"email": EDITOR[0], "password": EDITOR[1], "csrf_token": csrf_of(page)},
    )
    assert r.headers["Location"].endswith("/editor/dashboard")


def test_login_follows_next_inside_the_editor(app, accounts):
    client = app.test_client()
    page = client.get("/editor/login").get_data(as_text=True)
    r = client.post(
        "/editor/login?next=/editor/articles",
        data={"email": EDITOR[0], "password": EDITOR[1], "csrf_token": csrf_of(page)},
    )
    assert r.headers["Location"].endswith("/editor/articles")


# --- CSRF and headers ---------------------------------------------------------------


def test_login_without_csrf_token_is_refused(app, accounts):
    client = app.test_client()
    r = client.post("/editor/login", data={"email": EDITOR[0], "password": EDITOR[1]})
    assert r.status_code == 400
    assert client.get("/editor/dashboard").status_code == 302


def test_state_changes_without_csrf_are_refused(app, accounts):
    client = app.test_client()
    assert login(client, *ADMIN).status_code == 302
    for url in ("/editor/logout", "/editor/editors", "/editor/articles/1/hold", "/editor/issues/1/approve"):
        assert client.post(url, data={"email": "x@example.org"}).status_code == 400, url
    assert client.get("/editor/dashboard").status_code == 200  # still logged in: logout was refused


def test_security_headers_on_editor_pages(admin):
    r = admin.get("/editor/dashboard")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.get_data(as_text=True)
    assert "<script>" not in body and " style=" not in body and "onclick" not in body
    assert '<script src="/static/editor.js" defer>' in body


# --- every /editor route refuses anonymous visitors --------------------------------------


def test_every_editor_route_refuses_anonymous_visitors(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/editor") or rule.endpoint == "editor.login":
            continue
        url = _concrete(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            app.config["WTF_CSRF_ENABLED"] = False  # so POSTs reach the login guard
            response = client.open(url, method=method)
            app.config["WTF_CSRF_ENABLED"] = True
            assert response.status_code in (302, 401, 403), (method, url, response.status_code)
            if response.status_code == 302:
                assert "/editor/login" in response.headers["Location"], (method, url)
            checked += 1
    assert checked >= 25


def test_an_editor_gets_403_on_every_admin_page(app, editor):
    app.config["WTF_CSRF_ENABLED"] = False
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in ADMIN_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = editor.client.open(_concrete(rule), method=method)
            assert response.status_code == 403, (method, rule.rule, response.status_code)
            checked += 1
    assert checked >= 10
    assert "editor.subscribers" in ADMIN_ENDPOINTS and "editor.editors" in ADMIN_ENDPOINTS


def test_editor_nav_hides_admin_pages(editor, admin):
    body = editor.get("/editor/dashboard").get_data(as_text=True)
    assert "/editor/subscribers" not in body and "/editor/issues" in body
    assert "/editor/subscribers" in admin.get("/editor/dashboard").get_data(as_text=True)


# --- editor accounts page (admin) -----------------------------------------------------


def test_admin_adds_and_deletes_editors(admin):
    admin.get("/editor/editors")
    r = admin.post(
        "/editor/editors", data={"email": "new@example.org", "role": "editor", "password": "fresh password 1"}
    )
    assert r.status_code == 302
    with session_scope() as s:
        new_id = s.exec(select(Editor.id).where(Editor.email == "new@example.org")).one()
        admin_id = s.exec(select(Editor.id).where(Editor.email == ADMIN[0])).one()
    assert admin.post(f"/editor/editors/{new_id}/delete").status_code == 302
    admin.post(f"/editor/editors/{admin_id}/delete")
    body = admin.get("/editor/editors").get_data(as_text=True)
    assert "<td>new@example.org" not in body and f"<td>{ADMIN[0]}" in body
    assert "You cannot delete your own account" in body


def test_settings_page_hides_secrets(admin, app):
    body = admin.get("/editor/settings").get_data(as_text=True)
    assert "NEWSLETTER_SCHEDULE" in body
    assert app.config["SECRET_KEY"] not in body and "test-token" not in body
