"""The issues API: scoped tokens, ETag / If-Match, Idempotency-Key, problem
details, and each action going through the editor's own services (real
database; test sends to a real SMTP server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from newsletter.access.tokens import create_token
from newsletter.db import session_scope
from newsletter.models import AuditEntry, Delivery, Issue
from tests.editor_fixtures import add_subscriber, seed_issue

PROBLEM = "application/problem+json"


def make_token(*scopes: str, name: str = "agent") -> str:
    with session_scope() as session:
        _, secret = create_token(session, name=name, scopes=scopes, created_by="test")
    return secret


def auth(token: str, **headers) -> dict:
    return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture
def issue(settings, app) -> int:
    number = seed_issue(settings)
    for address in ("ann@example.org", "bo@example.org"):
        add_subscriber(address)
    return number


@pytest.fixture
def writer():
    return make_token("issues:read", "issues:write")


@pytest.fixture
def sender():
    return make_token("issues:read", "issues:write", "issues:send")


def test_read_list_and_etag(client, issue, writer):
    r = client.get("/api/v1/issues", headers=auth(writer))
    assert r.status_code == 200
    assert [i["number"] for i in r.json["data"]] == [issue] and r.json["next_cursor"] is None
    one = client.get(f"/api/v1/issues/{issue}", headers=auth(writer))
    assert one.status_code == 200 and one.headers["ETag"].startswith('"')
    assert one.json["status"] == "draft" and len(one.json["articles"]) == 4
    assert {a["section"] for a in one.json["articles"]} == {"agents", "ethics"}


def test_patch_needs_if_match_and_refuses_a_stale_one(client, issue, writer):
    etag = client.get(f"/api/v1/issues/{issue}", headers=auth(writer)).headers["ETag"]
    missing = client.patch(f"/api/v1/issues/{issue}", json={"subject": "New"}, headers=auth(writer))
    assert missing.status_code == 428 and missing.mimetype == PROBLEM
    assert missing.json["status"] == 428 and "If-Match" in missing.json["detail"]

    ok = client.patch(
        f"/api/v1/issues/{issue}",
        json={"subject": "Agent's subject"},
        headers=auth(writer, **{"If-Match": etag}),
    )
    assert ok.status_code == 200 and ok.json["subject"] == "Agent's subject"
    assert ok.headers["ETag"] != etag

    # An editor (or another agent) saved in between: the old ETag no longer matches.
    stale = client.patch(
        f"/api/v1/issues/{issue}", json={"subject": "Overwrite"}, headers=auth(writer, **{"If-Match": etag})
    )
    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    assert stale.headers["ETag"] == ok.headers["ETag"]
    with session_scope() as session:
        assert session.scalars(select(Issue.subject)).one() == "Agent's subject"


def test_patch_reorders_articles_and_refuses_bad_input(client, issue, writer):
    got = client.get(f"/api/v1/issues/{issue}", headers=auth(writer))
    order = [{"article_id": a["article_id"], "section": a["section"]} for a in got.json["articles"]][::-1]
    r = client.patch(
        f"/api/v1/issues/{issue}",
        json={"articles": order[:3]},
        headers=auth(writer, **{"If-Match": got.headers["ETag"]}),
    )
    assert r.status_code == 200
    assert [a["article_id"] for a in r.json["articles"]] == [a["article_id"] for a in order[:3]]
    etag = r.headers["ETag"]
    for body, status in (
        ({"title": ""}, 400),
        ({"title": "\u0001 \u0002"}, 400),
        ({}, 400),
        ({"title": 5}, 400),
        ({"status": "sent"}, 400),
        ({"articles": [{"article_id": 99999, "section": "agents"}]}, 422),
        ({"articles": [{"article_id": "1", "section": "agents"}]}, 400),
    ):
        bad = client.patch(f"/api/v1/issues/{issue}", json=body, headers=auth(writer, **{"If-Match": etag}))
        assert bad.status_code == status, (body, bad.json)
        assert bad.mimetype == PROBLEM and bad.json["detail"]
    assert (
        client.get(f"/api/v1/issues/{issue}", headers=auth(writer)).headers["ETag"] == etag
    )  # nothing changed
    crlf = client.patch(f"/api/v1/issues/{issue}", json={"subject": "a\r\nBcc: x@example.org"},
                        headers=auth(writer, **{"If-Match": etag}))  # fmt: skip
    assert crlf.status_code == 200 and "\n" not in crlf.json["subject"] and "\r" not in crlf.json["subject"]


def test_scopes_and_tokens(client, issue, writer):
    assert client.get("/api/v1/issues").status_code == 401
    assert client.get("/api/v1/issues", headers=auth("gts_forged")).status_code == 401
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth(writer))
    assert r.status_code == 403 and r.json["required_scope"] == "issues:send"
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    reader_only = make_token("stats:read")
    assert client.get("/api/v1/issues", headers=auth(reader_only)).status_code == 403
    # the environment's tokens have every scope
    assert client.get("/api/v1/issues", headers=auth("test-token")).status_code == 200


def test_send_is_idempotent_and_a_reused_key_with_another_body_is_refused(client, issue, sender):
    client.post(f"/api/v1/issues/{issue}/approve", headers=auth(sender))
    key = {"Idempotency-Key": "send-week-1"}
    first = client.post(f"/api/v1/issues/{issue}/send", headers=auth(sender, **key))
    assert first.status_code == 202 and first.json["status"] == "sending"
    assert first.json["zones"] == []  # to everyone at once: no zones (local-time sends list them)
    again = client.post(f"/api/v1/issues/{issue}/send", headers=auth(sender, **key))
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    without = client.post(f"/api/v1/issues/{issue}/send", headers=auth(sender))
    assert without.status_code == 409  # a second send without the key is refused by the service
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
    other = client.post(f"/api/v1/issues/{issue}/test", json={"addresses": ["x@example.org"]},
                        headers=auth(sender, **key))  # fmt: skip
    assert (
        other.status_code == 409
        and other.mimetype == PROBLEM
        and other.json["error"] == "idempotency-key-reused"
    )


def test_concurrent_retries_of_send_act_once(app, issue, sender):
    client = app.test_client()
    client.post(f"/api/v1/issues/{issue}/approve", headers=auth(sender))

    def send(_):
        return app.test_client().post(
            f"/api/v1/issues/{issue}/send", headers=auth(sender, **{"Idempotency-Key": "k1"})
        )

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(r.status_code for r in pool.map(send, range(4)))
    assert codes.count(202) >= 1 and set(codes) <= {202, 409}
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_preview_as_a_reader_of_one_topic_with_lint(client, issue, writer):
    r = client.get(f"/api/v1/issues/{issue}/preview?topics=ethics&format=text", headers=auth(writer))
    assert r.status_code == 200 and r.json["topics"] == ["ethics"]
    assert "Ethics story 0" in r.json["body"] and "Agents story 0" not in r.json["body"]
    assert isinstance(r.json["lint"], list)
    html = client.get(f"/api/v1/issues/{issue}/preview", headers=auth(writer))
    assert "<html" in html.json["body"].lower()
    bad = client.get(f"/api/v1/issues/{issue}/preview?topics=nope", headers=auth(writer))
    assert bad.status_code == 400 and bad.json["field"] == "topics"


def test_lifecycle_and_audit(client, issue, sender):
    assert (
        client.post(
            f"/api/v1/issues/{issue}/schedule", json={"at": "2020-01-01T00:00:00Z"}, headers=auth(sender)
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/api/v1/issues/{issue}/schedule", json={"at": "2099-01-01T08:00:00"}, headers=auth(sender)
        ).status_code
        == 400
    )
    r = client.post(
        f"/api/v1/issues/{issue}/schedule", json={"at": "2099-01-01T08:00:00+01:00"}, headers=auth(sender)
    )
    assert r.status_code == 200 and r.json["status"] == "scheduled"
    assert r.json["scheduled_for"].startswith("2099-01-01T07:00")
    assert (
        client.post(f"/api/v1/issues/{issue}/unschedule", headers=auth(sender)).json["status"] == "approved"
    )
    assert client.post(f"/api/v1/issues/{issue}/pause", headers=auth(sender)).status_code == 409
    assert client.post(f"/api/v1/issues/{issue}/cancel", headers=auth(sender)).json["status"] == "cancelled"
    assert client.post("/api/v1/issues/999/approve", headers=auth(sender)).status_code == 404
    with session_scope() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action.split()[0], e.status) for e in rows][:3] == [
        ("POST", 422),
        ("POST", 400),
        ("POST", 200),
    ]
    assert all(e.actor.startswith("token:") and "agent" in e.actor for e in rows)
    assert rows[2].target == f"/api/v1/issues/{issue}/schedule"


def test_method_not_allowed_names_allow(client, issue, writer):
    r = client.delete(f"/api/v1/issues/{issue}", headers=auth(writer))
    assert r.status_code == 405 and r.mimetype == PROBLEM
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PATCH"}
    assert client.get("/api/v1/nothing-here").mimetype == PROBLEM
