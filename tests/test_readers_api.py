"""POST /api/v1/subscribers: public JSON subscribe for embedded forms."""

from __future__ import annotations

import pytest

from tests.readers_fixtures import outbox, reader

pytestmark = pytest.mark.usefixtures("running_sender")  # the mail sender runs, as in `serve`
ORIGIN = "https://blog.example.org"


def test_api_subscribes_with_double_opt_in(client, topics):
    response = client.post(
        "/api/v1/subscribers", json={"email": "Ann@Example.org", "name": "Ann", "topics": ["models"]}
    )
    assert response.status_code == 202 and response.json["status"] == "accepted"
    sub = reader("ann@example.org")
    assert sub.status == "pending" and sub.topics == "models" and sub.consent_source == "api"
    assert [m.to for m in outbox()] == ["ann@example.org"]


def test_api_needs_no_token_and_answers_alike_for_known_addresses(client, topics):
    client.post("/api/v1/subscribers", json={"email": "bo@example.org"})
    first = client.post("/api/v1/subscribers", json={"email": "new@example.org"})
    second = client.post("/api/v1/subscribers", json={"email": "bo@example.org"})
    assert first.status_code == second.status_code == 202 and first.json == second.json


def test_api_errors_are_json(client, topics):
    cases = [
        ({"email": "not-an-address"}, 400, "email"),
        ({"email": "ann@example.org", "name": "Ann\r\nBcc: x@example.org"}, 400, "name"),
        ({"email": "ann@example.org", "topics": ["nope"]}, 400, "topics"),
        ({"email": "ann@example.org", "topics": "agents;models"}, 202, None),
        ({"email": ["ann@example.org"]}, 400, "email"),
        ({"email": "ann2@example.org", "topics": [1, 2]}, 400, "topics"),
    ]
    for body, status, field in cases:
        response = client.post("/api/v1/subscribers", json=body)
        assert response.status_code == status, body
        if field:
            assert response.json["field"] == field and response.json["message"]
    assert client.post("/api/v1/subscribers", json=["ann@example.org"]).status_code == 400
    assert (
        client.post("/api/v1/subscribers", data="{nope", content_type="application/json").status_code == 400
    )
    form = client.post("/api/v1/subscribers", data={"email": "ann@example.org"})
    assert form.status_code == 415 and form.is_json


def test_api_honeypot(client, topics):
    assert (
        client.post("/api/v1/subscribers", json={"email": "bot@example.org", "website": "x"}).status_code
        == 202
    )
    assert reader("bot@example.org") is None


def test_cors_only_for_configured_origins(make_app, topics):
    client = make_app(cors_origins=(ORIGIN,)).test_client()
    preflight = client.options(
        "/api/v1/subscribers",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    ok = client.post("/api/v1/subscribers", json={"email": "x"}, headers={"Origin": ORIGIN})
    assert (
        ok.status_code == 400 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    )  # errors readable too

    evil = client.post(
        "/api/v1/subscribers", json={"email": "ann@example.org"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in evil.headers
    assert "Origin" in evil.headers["Vary"]
    other = client.get("/api/v1/openapi.json", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in other.headers  # only this one route


def test_no_cors_by_default(client, topics):
    response = client.post(
        "/api/v1/subscribers", json={"email": "ann@example.org"}, headers={"Origin": ORIGIN}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_documented_in_openapi(client):
    spec = client.get("/api/v1/openapi.json").json
    post = spec["paths"]["/subscribers"]["post"]
    assert {} in post["security"] and "202" in post["responses"]  # anonymous allowed (public form)
    assert "429" in post["responses"]
    assert spec["components"]["schemas"]["SubscribeRequest"]["required"] == ["email"]
