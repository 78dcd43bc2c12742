"""The OpenAPI document and the routes agree: every API route and method is
documented and every documented operation exists; each token-protected
operation names, as its security, the scope its view demands; every response
is described; the reference page renders it from our own origin."""

from __future__ import annotations

import re

from newsletter.models import API_SCOPES

NOT_OPERATIONS = {"/openapi.json", "/reference"}
METHODS = {"GET", "POST", "PATCH", "DELETE", "PUT"}


def routes(app) -> dict[tuple[str, str], object]:
    found = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1") :])
        if path in NOT_OPERATIONS:
            continue
        view = app.view_functions[rule.endpoint]
        for method in rule.methods & METHODS:
            found[(path, method)] = view
    return found


def test_every_route_is_documented_and_every_operation_exists(app, client):
    document = client.get("/api/v1/openapi.json").json
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = routes(app)
    assert set(served) == documented


def test_security_names_the_scope_the_view_demands(app, client):
    document = client.get("/api/v1/openapi.json").json
    for (path, method), view in routes(app).items():
        operation = document["paths"][path][method.lower()]
        scope = getattr(view, "scopes", {}).get(method) or getattr(view, "required_scope", None)
        scopes = [s for requirement in operation["security"] for s in requirement.get("bearer", [])]
        if path == "/subscribers" and method == "POST":
            assert {} in operation["security"] and scopes == [
                "subscribers:write"
            ]  # public, or trusted with a token
            continue
        assert scope in API_SCOPES, (path, method)
        assert scopes == [scope], (path, method)
        for status in ("401", "403", "429"):
            assert status in operation["responses"], (path, method, status)


def test_every_response_is_described_and_errors_are_problems(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                assert response.get("description"), (path, method, status)
                if int(status) >= 400:
                    assert "application/problem+json" in response.get("content", {}), (path, method, status)


def test_reference_page_is_ours_and_complete(client):
    page = client.get("/api/v1/reference")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert (
        "<script" not in html and "http" not in re.sub(r'(href|src)="/[^"]*"', "", html).split("Base URL")[0]
    )
    document = client.get("/api/v1/openapi.json").json
    for path, item in document["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in html
    assert 'id="problem-precondition-failed"' in html
