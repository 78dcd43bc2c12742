"""A week of GET THE SIGNAL driven from a script: plain `requests`, one scoped token.

    export SIGNAL_URL=https://news.example.org
    export SIGNAL_TOKEN=$(newsletter token create --name weekly-agent \
        --scope articles:write --scope issues:read --scope issues:write --scope issues:send)
    python docs/examples/api_week.py

It posts the week's articles, assembles the issue, changes its subject,
previews it as a reader of one topic (stopping on lint errors), approves it,
schedules it a minute ahead, waits while the scheduler sends it, and prints
the outcomes. Every POST carries an Idempotency-Key, so a retry after a
network error never acts twice; the PATCH carries If-Match, so an editor's
change made meanwhile is never overwritten silently. tests/test_api_week.py
runs this very file against a live server and a real SMTP server.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests


class ApiError(RuntimeError):
    """An RFC 9457 problem from the API."""

    def __init__(self, response: requests.Response):
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason, "detail": response.text[:200]}
        super().__init__(f"{response.status_code} {problem.get('title')}: {problem.get('detail')}")
        self.status = response.status_code
        self.problem = problem


class Api:
    def __init__(self, base_url: str, token: str):
        self.base = base_url.rstrip("/") + "/api/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, *, json=None, params=None, headers=None) -> requests.Response:
        response = self.http.request(
            method, self.base + path, json=json, params=params, headers=headers or {}, timeout=30
        )
        if response.status_code >= 400:
            raise ApiError(response)
        return response

    def get(self, path: str, **params) -> requests.Response:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body=None, *, key: str | None = None) -> dict:
        """POST with an Idempotency-Key: retrying with the same key returns the first answer."""
        key = key or str(uuid.uuid4())
        for attempt in range(3):
            try:
                return self.call("POST", path, json=body, headers={"Idempotency-Key": key}).json()
            except requests.ConnectionError:
                if attempt == 2:
                    raise
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def patch(self, path: str, changes: dict) -> dict:
        """Read the current version, then change it only if nobody else did meanwhile (412 otherwise)."""
        etag = self.get(path).headers["ETag"]
        return self.call("PATCH", path, json=changes, headers={"If-Match": etag}).json()


def prepare_issue(api: Api, articles: list[dict], *, subject: str, topic: str, send_at: datetime) -> dict:
    """Steps 1 and 2: articles in, assemble, subject, preview, approve, schedule."""
    stored = api.post("/articles", articles)
    print(f"articles: {stored['created']} new, {stored['updated']} updated")

    issue = api.post("/issues")
    number = issue["number"]
    print(f"assembled Issue {number:03d} with {len(issue['articles'])} articles")

    api.patch(f"/issues/{number}", {"subject": subject})

    preview = api.get(f"/issues/{number}/preview", topics=topic, format="text").json()
    errors = [f for f in preview["lint"] if f["level"] == "error"]
    if errors:
        raise SystemExit(f"not approving: {errors}")
    print(f"preview for a reader of {topic!r}: {preview['subject']!r}, {len(preview['body'])} characters")

    api.post(f"/issues/{number}/approve")
    scheduled = api.post(f"/issues/{number}/schedule", {"at": send_at.isoformat()})
    print(f"scheduled for {scheduled['scheduled_for']}")
    return {"number": number, "preview": preview, "scheduled": scheduled}


def wait_until_sent(api: Api, number: int, *, poll: float = 5.0, timeout: float = 3600.0) -> dict:
    """Step 3: follow the send the scheduler starts at the scheduled time."""
    deadline = time.monotonic() + timeout
    while True:
        status = api.get(f"/issues/{number}/status").json()
        if status["finished"]:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"Issue {number:03d} is still {status['status']}")
        time.sleep(poll)


def outcomes(api: Api, number: int) -> dict:
    """Step 4: what happened, counted."""
    return api.get(f"/issues/{number}/outcomes").json()


def main() -> None:
    api = Api(os.environ["SIGNAL_URL"], os.environ["SIGNAL_TOKEN"])
    now = datetime.now(UTC)
    articles = [
        {
            "external_id": "wk-1",
            "title": "Agents that read the docs first",
            "url": "https://example.org/agents-docs",
            "synopsis": "Why tool-using agents fail less when they read the manual.",
            "published_at": now.isoformat(),
            "tags": ["ai-agents"],
        },
        {
            "external_id": "wk-2",
            "title": "Consent, logged",
            "url": "https://example.org/consent",
            "synopsis": "Keeping a consent record that survives an audit.",
            "published_at": now.isoformat(),
            "tags": ["ethics"],
        },
    ]
    week = prepare_issue(
        api, articles, subject="Agents, read the manual", topic="ethics", send_at=now + timedelta(minutes=1)
    )
    status = wait_until_sent(api, week["number"])
    print(f"Issue {week['number']:03d}: {status['status']}, {status['counts']}")
    print(outcomes(api, week["number"]))


if __name__ == "__main__":
    main()
