"""API tokens: the service (hash only, scopes, revoke, last use), the CLI,
the editor's tokens page (secret shown once) and audit page, the per-token
rate limit, and NEWSLETTER_API_TOKENS kept working with every scope."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter import clock
from newsletter.access.tokens import TokenInvalid, create_token, hash_secret
from newsletter.db import session_scope
from newsletter.models import API_SCOPES, ApiToken, AuditEntry, IdempotencyRecord
from newsletter.scheduling import jobs
from tests.editor_fixtures import ADMIN

PROBLEM = "application/problem+json"


def test_only_the_hash_is_stored_and_bad_requests_are_refused(app):
    with session_scope() as session:
        row, secret = create_token(session, name="  agent\n one ", scopes=["issues:read,issues:write"])
        assert row.name == "agent one" and row.scope_list == ["issues:read", "issues:write"]
    with session_scope() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert stored.token_hash == hash_secret(secret) and secret not in repr(stored.__dict__)
        for name, scopes, message in (
            ("", ["issues:read"], "name"),
            ("x", [], "at least one scope"),
            ("x", ["issues:admin"], "unknown scope"),
            ("x" * 101, ["issues:read"], "longer than 100"),
        ):
            with pytest.raises(TokenInvalid, match=message):
                create_token(session, name=name, scopes=scopes)
        assert create_token(session, name="all", scopes=["*"])[0].scope_list == list(API_SCOPES)


def test_last_use_revoke_and_forged_tokens(client):
    with session_scope() as session:
        _, secret = create_token(session, name="agent", scopes=["stats:read"])
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/stats", headers=headers).status_code == 200
    with session_scope() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.last_used_at == clock.now() or row.last_used_at is not None
        token_id = row.id
    for forged in (
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        secret + "x",
        "",
        "Bearer",
        "\u00e9" * 40,
    ):
        r = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and r.mimetype == PROBLEM and "WWW-Authenticate" in r.headers
    with session_scope() as session:
        session.get(ApiToken, token_id).revoked_at = clock.now()
    assert client.get("/api/v1/stats", headers=headers).status_code == 401


def test_environment_tokens_have_every_scope_and_no_token_means_closed(make_app):
    open_app = make_app(api_tokens=("env-secret",))
    r = open_app.test_client().get("/api/v1/subscribers", headers={"Authorization": "Bearer env-secret"})
    assert r.status_code == 200 and r.json == {"data": [], "next_cursor": None}
    closed = make_app(api_tokens=()).test_client().get("/api/v1/stats", headers={"Authorization": "Bearer x"})
    assert closed.status_code == 403 and closed.json["error"] == "api-closed"


def test_each_token_has_its_own_rate_limit(make_app):
    app = make_app(api_rate_limit="3/minute")
    client = app.test_client()
    with session_scope() as session:
        one = create_token(session, name="one", scopes=["stats:read"])[1]
        two = create_token(session, name="two", scopes=["stats:read"])[1]
    codes = [
        client.get("/api/v1/stats", headers={"Authorization": f"Bearer {one}"}).status_code for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {one}"})
    assert limited.mimetype == PROBLEM and limited.headers.get("Retry-After")
    assert client.get("/api/v1/stats", headers={"Authorization": f"Bearer {two}"}).status_code == 200


def test_cli_create_list_revoke(app):
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["token", "create", "--name", "ci bot", "--scope", "issues:read", "--scope", "stats:read"]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("gts_")
    listed = runner.invoke(args=["token", "list", "--json"])
    assert '"ci bot"' in listed.output and secret not in listed.output
    assert (
        app.test_client().get("/api/v1/stats", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    assert runner.invoke(args=["token", "revoke", "1"]).exit_code == 0
    assert (
        app.test_client().get("/api/v1/stats", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    bad = runner.invoke(args=["token", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code != 0 and "unknown scope" in bad.output
    assert runner.invoke(args=["token", "revoke", "99"]).exit_code != 0


def test_editor_page_shows_the_secret_once_and_revokes(admin, editor, app):
    page = admin.get("/editor/api-tokens")
    assert page.status_code == 200 and "No tokens yet" in page.get_data(as_text=True)
    made = admin.post(
        "/editor/api-tokens", data={"name": "zapier", "scopes": ["subscribers:write", "stats:read"]}
    )
    html = made.get_data(as_text=True)
    secret = re.search(r'id="token-secret">(gts_[^<]+)<', html).group(1)
    assert made.headers["Cache-Control"] == "no-store"
    again = admin.get("/editor/api-tokens").get_data(as_text=True)
    assert secret not in again and "zapier" in again and "subscribers:write, stats:read" in again
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    assert client.get("/api/v1/stats", headers=headers).status_code == 200
    assert client.get("/api/v1/issues", headers=headers).status_code == 403

    refused = admin.post("/editor/api-tokens", data={"name": "x", "scopes": ["root"]})
    assert refused.status_code == 400
    assert editor.get("/editor/api-tokens").status_code == 403
    assert (
        editor.post("/editor/api-tokens", data={"name": "sneaky", "scopes": ["stats:read"]}).status_code
        == 403
    )
    no_csrf = app.test_client()
    assert no_csrf.post("/editor/api-tokens", data={"name": "x"}).status_code in (302, 400)

    with session_scope() as session:
        token_id = session.scalars(select(ApiToken.id)).one()
    admin.get("/editor/api-tokens")
    assert admin.post(f"/editor/api-tokens/{token_id}/revoke").status_code == 302
    assert client.get("/api/v1/stats", headers=headers).status_code == 401
    assert "revoked" in admin.get("/editor/api-tokens").get_data(as_text=True)


def test_audit_page_lists_api_and_editor_changes_for_admins_only(admin, editor, app):
    with session_scope() as session:
        secret = create_token(session, name="crm", scopes=["subscribers:write"])[1]
    r = app.test_client().post(
        "/api/v1/subscribers",
        json={"email": "ann@example.org", "consent_source": "api", "consent_text": "<b>yes</b>"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 201
    admin.get("/editor/api-tokens")
    admin.post("/editor/api-tokens", data={"name": "<script>x</script>", "scopes": ["stats:read"]})
    with session_scope() as session:
        actors = [e.actor for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actors[0].startswith("token:") and actors[0].endswith("crm")
    assert f"editor:{ADMIN[0]}" in actors
    page = admin.get("/editor/audit").get_data(as_text=True)
    assert "POST /api/v1/subscribers" in page and "crm" in page and "<script>x" not in page
    only_api = admin.get("/editor/audit?actor=token:").get_data(as_text=True)
    assert "crm" in only_api and f"editor:{ADMIN[0]}" not in only_api
    assert editor.get("/editor/audit").status_code == 403


def test_retention_forgets_idempotency_keys_after_a_day_and_old_audit_entries(client, settings):
    with session_scope() as session:
        secret = create_token(session, name="crm", scopes=["subscribers:write"])[1]
    body = {"email": "ann@example.org", "consent_source": "api", "consent_text": "yes"}
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "k-1"}
    assert client.post("/api/v1/subscribers", json=body, headers=headers).status_code == 201
    assert (
        client.post("/api/v1/subscribers", json=body, headers=headers).headers["Idempotent-Replayed"]
        == "true"
    )
    now = clock.now()
    assert jobs.retention(settings, now + timedelta(hours=23))["idempotency_keys"] == 0
    deleted = jobs.retention(settings, now + timedelta(days=1, minutes=1))
    assert deleted["idempotency_keys"] == 1 and deleted["audit_entries"] == 0
    with session_scope() as session:
        assert session.scalars(select(IdempotencyRecord)).first() is None
    assert jobs.retention(settings, now + timedelta(days=settings.retention_days + 1))["audit_entries"] == 1
