"""The readers through the API: a trusted add (idempotent retries), list and
search in cursor pages, change, unsubscribe, suppress, erase, the streamed
CSV export, and hostile input; also a test send to a real SMTP server."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from newsletter.access.tokens import create_token
from newsletter.db import session_scope
from newsletter.models import Subscriber, Suppression
from tests.editor_fixtures import add_subscriber, seed_issue

PROBLEM = "application/problem+json"
CONSENT = {"consent_source": "import", "consent_text": "Ticked the box at our conference stand."}


@pytest.fixture
def topics(settings, app):
    seed_issue(settings)  # sections: agents, ethics


@pytest.fixture
def auth(app):
    with session_scope() as session:
        secret = create_token(session, name="crm", scopes=["subscribers:read", "subscribers:write"])[1]
    return {"Authorization": f"Bearer {secret}"}


def count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Subscriber))


def test_trusted_add_is_idempotent_and_a_reused_key_is_refused(client, topics, auth):
    body = {"email": "Ann@Example.org", "name": "Ann", "topics": ["ethics"], **CONSENT}
    headers = {**auth, "Idempotency-Key": "crm-import-ann"}
    first = client.post("/api/v1/subscribers", json=body, headers=headers)
    assert (
        first.status_code == 201 and first.json["status"] == "active" and first.json["topics"] == ["ethics"]
    )
    assert first.json["consent"] == {
        "source": "import",
        "at": first.json["consent"]["at"],
        "text": CONSENT["consent_text"],
    }
    retry = client.post("/api/v1/subscribers", json=body, headers=headers)
    assert retry.status_code == 201 and retry.get_data() == first.get_data()
    assert retry.headers["Idempotent-Replayed"] == "true" and count() == 1
    other = client.post("/api/v1/subscribers", json={**body, "email": "bo@example.org"}, headers=headers)
    assert other.status_code == 409 and other.mimetype == PROBLEM and count() == 1
    again = client.post(
        "/api/v1/subscribers", json=body, headers=auth
    )  # no key: the service says it is there
    assert again.status_code == 200 and again.json["result"] in ("updated", "already_active") and count() == 1


def test_a_nul_in_the_consent_text_is_stored_as_a_replacement_character(client, topics, auth):
    """PostgreSQL's text cannot hold a NUL: it answered 500 (the API fuzz run found it)."""
    body = {"email": "nul@example.org", "consent_source": "import", "consent_text": "Ticked\x00 the box"}
    created = client.post("/api/v1/subscribers", json=body, headers=auth)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.json["consent"]["text"] == "Ticked\ufffd the box" and count() == 1


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"email": "x@example.org", "consent_source": "import", "consent_text": ""}, 400, "consent_text"),
        (
            {"email": "x@example.org", "consent_source": "telepathy", "consent_text": "y"},
            400,
            "consent_source",
        ),
        ({"email": "x@example.org", "name": "A\r\nBcc: y@example.org", **CONSENT}, 400, "name"),
        ({"email": "x@example.org", "topics": ["nope"], **CONSENT}, 400, "topics"),
        ({"email": "x@example.org", "admin": True, **CONSENT}, 400, None),
        ({"email": "not an address", **CONSENT}, 422, "email"),
        ({"email": "x@example.org\r\nBcc: y@example.org", **CONSENT}, 422, "email"),
    ],
)
def test_hostile_trusted_adds_are_refused_and_store_nothing(client, topics, auth, body, status, field):
    r = client.post("/api/v1/subscribers", json=body, headers=auth)
    assert r.status_code == status and r.mimetype == PROBLEM, r.json
    assert r.json.get("field") == field
    assert count() == 0


def test_list_search_pages_change_unsubscribe_suppress_erase_export(client, topics, auth):
    ids = [add_subscriber(f"r{n}@example.org", name=f"Reader {n}") for n in range(5)]
    page = client.get("/api/v1/subscribers?limit=2", headers=auth)
    assert [s["id"] for s in page.json["data"]] == ids[:2] and 'rel="next"' in page.headers["Link"]
    rest = client.get(f"/api/v1/subscribers?limit=2&cursor={page.json['next_cursor']}", headers=auth)
    assert [s["id"] for s in rest.json["data"]] == ids[2:4]
    found = client.get("/api/v1/subscribers?q=r3@", headers=auth)
    assert [s["email"] for s in found.json["data"]] == ["r3@example.org"]
    assert client.get("/api/v1/subscribers?cursor=abc", headers=auth).status_code == 400
    beyond = client.get(
        f"/api/v1/subscribers?cursor={2**31 + 5}", headers=auth
    )  # past any key: empty, not a 500
    assert beyond.status_code == 200 and beyond.json["data"] == []
    for q in ("r3\x00@", "\x00", "r3@\x1b"):  # control characters are dropped, never a database error
        nul = client.get("/api/v1/subscribers", query_string={"q": q}, headers=auth)
        assert nul.status_code == 200, q
        if q.strip("\x00"):
            assert [r["email"] for r in nul.json["data"]] == ["r3@example.org"], q

    one = client.get(f"/api/v1/subscribers/{ids[0]}", headers=auth)
    changed = client.patch(
        f"/api/v1/subscribers/{ids[0]}", json={"topics": ["agents"], "name": "Ada"},
        headers={**auth, "If-Match": one.headers["ETag"]},
    )  # fmt: skip
    assert (
        changed.status_code == 200 and changed.json["topics"] == ["agents"] and changed.json["name"] == "Ada"
    )
    stale = client.patch(
        f"/api/v1/subscribers/{ids[0]}",
        json={"name": "Eve"},
        headers={**auth, "If-Match": one.headers["ETag"]},
    )
    assert stale.status_code == 412
    assert (
        client.patch(f"/api/v1/subscribers/{ids[1]}", json={"status": "active"}, headers=auth).status_code
        == 400
    )
    left = client.patch(f"/api/v1/subscribers/{ids[1]}", json={"status": "unsubscribed"}, headers=auth)
    assert left.json["status"] == "unsubscribed"
    suppressed = client.patch(f"/api/v1/subscribers/{ids[2]}", json={"suppressed": True}, headers=auth)
    assert suppressed.json["suppressed"] is True
    assert client.delete(f"/api/v1/subscribers/{ids[3]}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/subscribers/{ids[3]}", headers=auth).status_code == 404
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 2  # suppressed + erased

    export = client.get("/api/v1/subscribers/export?status=active", headers=auth)
    assert export.status_code == 200 and export.mimetype == "text/csv" and export.is_streamed
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0].startswith("email,") and {line.split(",")[0] for line in lines[1:]} == {
        "r0@example.org",
        "r2@example.org",
        "r4@example.org",
    }
    assert client.get("/api/v1/subscribers/export?status=", headers=auth).status_code == 400


def test_reading_needs_read_and_changing_needs_write(client, topics):
    with session_scope() as session:
        reader = create_token(session, name="ro", scopes=["subscribers:read"])[1]
    sid = add_subscriber("ann@example.org")
    headers = {"Authorization": f"Bearer {reader}"}
    assert client.get(f"/api/v1/subscribers/{sid}", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/subscribers/{sid}", headers=headers).status_code == 403
    assert (
        client.post(
            "/api/v1/subscribers", json={"email": "b@example.org", **CONSENT}, headers=headers
        ).status_code
        == 403
    )


def test_api_test_send_reaches_a_real_smtp_server(make_app, smtp_server):
    app = make_app(transport=smtp_server.dsn)
    settings = app.extensions["signal_settings"]
    number = seed_issue(settings)
    with session_scope() as session:
        secret = create_token(session, name="agent", scopes=["issues:send"])[1]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    r = client.post(
        f"/api/v1/issues/{number}/test",
        json={"addresses": ["ed@example.org"], "topics": ["ethics"]},
        headers=headers,
    )
    assert r.status_code == 200 and r.json["results"][0]["status"] == "sent"
    [mail] = smtp_server.wait_for(1)
    assert mail.to == "ed@example.org" and mail.message["Subject"].startswith("[TEST]")
    assert "Ethics story 0" in mail.text and "Agents story 0" not in mail.text
    bad = client.post(
        f"/api/v1/issues/{number}/test",
        json={"addresses": ["ed@example.org\r\nBcc: x@example.org"]},
        headers=headers,
    )
    assert bad.status_code == 422 and len(smtp_server.messages) == 1
