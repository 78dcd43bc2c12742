"""Must show: a plain `requests` script (docs/examples/api_week.py, the API
page's example) runs a whole week through the API with scoped tokens,
against a live server, and the scheduler sends the issue to a real SMTP
server (aiosmtpd). The clock is the controlled one of the scheduler tests:
the server runs in this process, so ``clock.set`` moves its time, and
``jobs.tick`` is the scheduler's tick at the scheduled minute.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter import clock
from newsletter.access.tokens import create_token
from newsletter.db import session_scope
from newsletter.delivery.mailqueue import send_due
from newsletter.models import AuditEntry, Delivery
from newsletter.scheduling import jobs

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "examples" / "api_week.py"
WEDNESDAY = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)  # far from the weekly slot (Monday 08:00)
READERS = {"ann@example.org": [], "bo@example.org": ["ethics"], "cy@example.org": ["ai-agents"]}


def load_script():
    spec = importlib.util.spec_from_file_location("api_week", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def token(*scopes: str, name: str) -> str:
    with session_scope() as session:
        return create_token(session, name=name, scopes=scopes, created_by="test")[1]


@pytest.fixture
def server(make_app, live_server_factory, smtp_server):
    clock.set(WEDNESDAY)
    return live_server_factory(make_app, transport=smtp_server.dsn, send_concurrency=1)


def articles(now: datetime) -> list[dict]:
    items = []
    for n, tag in enumerate(["ai-agents", "ai-agents", "ethics", "ethics"]):
        items.append(
            {
                "external_id": f"wk-{n}",
                "title": f"{tag} story {n}",
                "url": f"https://example.org/{tag}/{n}",
                "synopsis": f"What happened in {tag} ({n}).",
                "published_at": (now - timedelta(hours=n + 1)).isoformat(),
                "tags": [tag],
            }
        )
    return items


def test_a_whole_week_through_the_api_with_scoped_tokens(server, smtp_server):
    week = load_script()
    settings = server.app.extensions["signal_settings"]

    # 1–2: the agent's token (no reader access) runs the editorial week.
    agent = week.Api(
        server.url, token("articles:write", "issues:read", "issues:write", "issues:send", name="weekly-agent")
    )
    send_at = clock.now() + timedelta(minutes=1)
    prepared = week.prepare_issue(
        agent, articles(clock.now()), subject="Agents, read the manual", topic="ethics", send_at=send_at
    )
    number = prepared["number"]
    preview = prepared["preview"]
    assert preview["subject"] == "Agents, read the manual" and preview["topics"] == ["ethics"]
    assert "ethics story 2" in preview["body"] and "ai-agents story 0" not in preview["body"]
    assert prepared["scheduled"]["status"] == "scheduled"
    assert datetime.fromisoformat(prepared["scheduled"]["scheduled_for"]) == send_at

    # The readers come from another system, with a token that can only manage readers
    # (their topics are the sections the week's articles brought).
    crm = week.Api(server.url, token("subscribers:write", "subscribers:read", name="crm"))
    for address, topics in READERS.items():
        made = crm.post(
            "/subscribers",
            {
                "email": address,
                "topics": topics,
                "consent_source": "api",
                "consent_text": "Signed up at our event.",
            },
        )
        assert made["status"] == "active" and made["consent"]["source"] == "api"
    with pytest.raises(week.ApiError) as refused:
        crm.get("/issues")
    assert refused.value.status == 403 and refused.value.problem["required_scope"] == "issues:read"

    # A token without issues:send can read and edit, but cannot send or schedule.
    editor_only = week.Api(server.url, token("issues:read", "issues:write", name="copy-editor"))
    for action in ("send", "schedule", "unschedule", "cancel"):
        with pytest.raises(week.ApiError) as no_send:
            editor_only.post(
                f"/issues/{number}/{action}", {"at": send_at.isoformat()} if action == "schedule" else None
            )
        assert no_send.value.status == 403 and no_send.value.problem["required_scope"] == "issues:send"
    assert agent.get(f"/issues/{number}/status").json()["status"] == "scheduled"

    # 3: nothing before the minute; at the minute the scheduler sends it, once, to the real SMTP server.
    clock.set(send_at - timedelta(seconds=1))
    jobs.tick(settings)
    assert [m for m in smtp_server.messages if m.to in READERS] == []
    clock.set(send_at)
    actions = jobs.tick(settings)
    send_due(settings)
    assert any(a.startswith(f"timed Issue {number:03d}") for a in actions), actions
    smtp_server.wait_for(len(READERS))
    got = {m.to: m for m in smtp_server.messages if m.to in READERS}
    assert set(got) == set(READERS)
    assert all(m.message["Subject"] == "Agents, read the manual" for m in got.values())
    assert (
        "ethics story 2" in got["bo@example.org"].text
        and "ai-agents story 0" not in got["bo@example.org"].text
    )

    status = week.wait_until_sent(agent, number, poll=0.1, timeout=10)
    assert status["status"] == "sent" and status["counts"]["sent"] == len(READERS)

    # 4: the outcomes.
    result = week.outcomes(agent, number)
    assert (result["sent"], result["delivered"], result["failed"]) == (len(READERS), len(READERS), 0)

    # Later ticks send nothing more; every change is in the audit log under its token.
    clock.set(send_at + timedelta(minutes=10))
    jobs.tick(settings)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == len(READERS)
        actors = {e.actor.split(" ", 1)[1] for e in session.scalars(select(AuditEntry))}
    assert {"crm", "weekly-agent", "copy-editor"} <= actors
    assert len(smtp_server.messages) == len([m for m in smtp_server.messages if m.to in READERS])


def test_the_api_page_shows_this_script():
    page = (SCRIPT.parent.parent / "api.md").read_text()
    assert SCRIPT.read_text() in page
