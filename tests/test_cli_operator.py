"""Every action on the command line: each command through the real `newsletter`
CLI (click's runner over the app), its exit code, its text and its --json."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.content.service import upsert_articles
from newsletter.db import session_scope
from newsletter.models import Article, Editor, Issue, Tag
from tests.delivery_fixtures import queued_mail
from tests.editor_fixtures import ADMIN, EDITOR, login, make_account, seed_issue
from tests.helpers import SmtpSink, free_port

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def cli(app):
    clock.set(NOW)
    runner = app.test_cli_runner()

    def run(*args, input=None):
        return runner.invoke(args=list(args), input=input)

    return run


def issue(number: int) -> Issue:
    with session_scope() as session:
        return session.exec(select(Issue).where(Issue.number == number)).one()


# --- issue -----------------------------------------------------------------------------


def test_issue_approve_schedule_unschedule_cancel_and_list(cli, settings):
    number = seed_issue(settings)
    result = cli("issue", "approve", str(number))
    assert result.exit_code == 0 and "is approved" in result.output
    assert issue(number).approved_by.startswith("cli")
    assert cli("issue", "approve", str(number)).exit_code == 0  # again: already done

    result = cli(
        "issue", "schedule", str(number), "--at", "2026-12-07 08:00", "--tz", "Europe/Berlin", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "scheduled" and data["scheduled_for"] == "2026-12-07T07:00:00+00:00"
    assert issue(number).scheduled_for == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)

    listing = cli("issue", "list")
    assert listing.exit_code == 0 and f"{number:03d}" in listing.output and "scheduled" in listing.output
    [row] = json.loads(cli("issue", "list", "--json").output)
    assert row["number"] == number and row["status"] == "scheduled"

    assert "approved" in cli("issue", "unschedule", str(number)).output
    assert issue(number).scheduled_for is None and issue(number).status == "approved"
    result = cli("issue", "cancel", str(number))
    assert result.exit_code == 0 and issue(number).status == "cancelled"
    refused = cli("issue", "approve", str(number))
    assert refused.exit_code == 1 and "only a draft can be approved" in refused.output


@pytest.mark.parametrize(
    ("at", "zone", "message"),
    [
        ("2026-11-30 08:00", "UTC", "not in the future"),
        ("next monday", "UTC", "is not a time like"),
        ("2027-03-28 02:30", "Europe/Berlin", "does not exist in Europe/Berlin"),
        ("2026-12-07 08:00", "Mars/Olympus", "not an IANA time zone"),
    ],
)
def test_issue_schedule_refuses_bad_times_with_a_reason(cli, settings, at, zone, message):
    number = seed_issue(settings)
    result = cli("issue", "schedule", str(number), "--at", at, "--tz", zone)
    assert result.exit_code == 1 and message in result.output
    assert issue(number).status == "draft"


def test_issue_schedule_defaults_to_the_newsletter_time_zone(make_app, settings):
    app = make_app(timezone="America/New_York")
    clock.set(NOW)
    number = seed_issue(settings)
    result = app.test_cli_runner().invoke(args=["issue", "schedule", str(number), "--at", "2026-12-07 08:00"])
    assert result.exit_code == 0, result.output
    assert issue(number).scheduled_for == datetime(2026, 12, 7, 13, 0, tzinfo=UTC)


def test_unknown_issue_exits_1(cli):
    for verb in ("approve", "unschedule", "cancel"):
        result = cli("issue", verb, "99")
        assert result.exit_code == 1 and "no issue 99" in result.output


# --- articles and sections ------------------------------------------------------------


def _articles():
    report = upsert_articles(
        [
            {"id": "x1", "url": "https://e.org/1", "title": "Agents one", "tags": ["agents", "data"],
             "published_at": "2026-11-30T10:00:00Z"},
            {"id": "x2", "url": "https://e.org/2", "title": "Agents two", "tags": ["agents"],
             "published_at": "2026-11-25T10:00:00Z"},
            {"id": "x3", "url": "https://e.org/3", "title": "Policy", "tags": ["policy"],
             "published_at": "2026-11-29T10:00:00Z"},
        ],
        "feed",
        new_tags_are_sections=False,
    )  # fmt: skip
    return report.ids


def test_articles_list_filters_and_json(cli):
    ids = _articles()
    out = cli("articles", "list").output
    assert out.index("Agents one") < out.index("Policy") < out.index("Agents two")  # newest first
    since = json.loads(cli("articles", "list", "--since", "2026-11-28", "--json").output)
    assert [a["title"] for a in since] == ["Agents one", "Policy"]
    tagged = json.loads(cli("articles", "list", "--tag", "agents", "--json").output)
    assert [a["id"] for a in tagged] == [ids[0], ids[1]] and tagged[0]["tags"] == ["agents", "data"]
    assert cli("articles", "list", "--since", "last week").exit_code == 1


def test_articles_hold_and_release(cli):
    first = _articles()[0]
    assert cli("articles", "hold", str(first)).exit_code == 0
    with session_scope() as session:
        assert session.get(Article, first).held
    assert json.loads(cli("articles", "list", "--json").output)[0]["held"] is True
    assert cli("articles", "release", str(first)).exit_code == 0
    with session_scope() as session:
        assert not session.get(Article, first).held
    missing = cli("articles", "hold", "9999")
    assert missing.exit_code == 1 and "no article 9999" in missing.output


def test_a_fresh_installation_assembles_from_the_most_used_tags_and_says_how_to_choose(cli):
    _articles()  # feed articles: their categories never become sections by themselves
    listing = json.loads(cli("sections", "list", "--json").output)
    assert listing["source"] == "derived"
    assert [s["slug"] for s in listing["sections"]] == ["agents", "data", "policy"]  # most used, then by slug
    result = cli("issue", "assemble")
    assert result.exit_code == 0 and "draft ready for review" in result.output
    assert "most-used tags" in result.output and "newsletter sections set" in result.output
    with session_scope() as session:
        assert session.exec(select(Issue)).one().status == "draft"


def test_sections_set_chooses_order_and_names(cli, client):
    _articles()
    result = cli("sections", "set", "policy,agents", "--name", "agents=AI Agents")
    assert result.exit_code == 0 and "AI Agents (agents)" in result.output
    listing = json.loads(cli("sections", "list", "--json").output)
    assert listing["source"] == "chosen"
    assert listing["sections"] == [
        {"slug": "policy", "name": "Policy"},
        {"slug": "agents", "name": "AI Agents"},
    ]
    with session_scope() as session:
        assert not session.exec(select(Tag).where(Tag.slug == "data")).one().is_section
    page = client.get("/").get_data(as_text=True)
    assert page.index("Policy") < page.index("AI Agents")  # readers' topics follow
    assert "issue uses" not in cli("issue", "assemble").output  # chosen: no hint
    for bad in (
        ["sections", "set", "a,a"],
        ["sections", "set", "x", "--name", "y=Y"],
        ["sections", "set", "--", "!!"],
    ):
        assert cli(*bad).exit_code in (1, 2)


# --- subscribers --------------------------------------------------------------------------


def test_subscribers_add_remove_list(cli, topics):
    result = cli("subscribers", "add", "ann@example.org", "--name", "Ann", "--topics", "agents")
    assert result.exit_code == 0 and "added" in result.output
    assert cli("subscribers", "add", "bob@example.org", "--pending").exit_code == 0
    assert [m.to_email for m in queued_mail()] == ["bob@example.org"]  # only the pending one is mailed
    assert cli("subscribers", "add", "not an address").exit_code == 1
    assert cli("subscribers", "add", "x@example.org", "--topics", "nope").exit_code == 1

    rows = json.loads(cli("subscribers", "list", "--json").output)
    assert [(r["email"], r["status"], r["topics"]) for r in rows] == [
        ("ann@example.org", "active", ["agents"]),
        ("bob@example.org", "pending", []),
    ]
    assert "bob@example.org" not in cli("subscribers", "list", "--status", "active").output
    assert (
        json.loads(cli("subscribers", "list", "--search", "BOB", "--json").output)[0]["email"]
        == "bob@example.org"
    )

    assert "unsubscribed" in cli("subscribers", "remove", "ann@example.org").output
    assert "already unsubscribed" in cli("subscribers", "remove", "ann@example.org").output
    refused = cli("subscribers", "add", "ann@example.org")
    assert refused.exit_code == 1 and "only the reader can come back" in refused.output
    assert cli("subscribers", "remove", "nobody@example.org").exit_code == 1

    assert cli("subscribers", "remove", "bob@example.org", "--erase", "--yes").exit_code == 0
    assert [r["email"] for r in json.loads(cli("subscribers", "list", "--json").output)] == [
        "ann@example.org"
    ]
    assert queued_mail() == []  # the erased reader's confirmation went with them
    again = cli("subscribers", "add", "bob@example.org")
    assert again.exit_code == 1 and "suppression list" in again.output
    assert cli("subscribers", "unsuppress", "bob@example.org").exit_code == 0
    assert cli("subscribers", "add", "bob@example.org").exit_code == 0


def test_subscribers_list_json_is_valid_when_empty(cli):
    assert json.loads(cli("subscribers", "list", "--json").output) == []


# --- editors --------------------------------------------------------------------------------


def test_editor_list_set_password_disable_enable(cli, app):
    make_account(*ADMIN, "admin")
    make_account(*EDITOR, "editor")
    accounts = json.loads(cli("editor", "list", "--json").output)
    assert [(a["email"], a["role"], a["disabled"]) for a in accounts] == [
        ("admin@example.org", "admin", False),
        ("editor@example.org", "editor", False),
    ]
    client = app.test_client()
    assert login(client, *EDITOR).status_code == 302
    assert client.get("/editor/dashboard").status_code == 200

    assert cli("editor", "disable", EDITOR[0]).exit_code == 0
    assert client.get("/editor/dashboard").status_code == 302  # the session ended with the account
    assert login(app.test_client(), *EDITOR).status_code == 401
    assert "disabled" in cli("editor", "list").output
    refused = cli("editor", "disable", ADMIN[0])
    assert refused.exit_code == 1 and "last admin" in refused.output

    assert cli("editor", "enable", EDITOR[0]).exit_code == 0
    result = cli("editor", "set-password", EDITOR[0], "--password-stdin", input="a brand new passphrase\n")
    assert result.exit_code == 0
    assert login(app.test_client(), EDITOR[0], "a brand new passphrase").status_code == 302
    weak = cli("editor", "set-password", EDITOR[0], "--password-stdin", input="short\n")
    assert weak.exit_code == 1 and "at least" in weak.output
    assert cli("editor", "disable", "ghost@example.org").exit_code == 1
    with session_scope() as session:
        assert session.exec(select(Editor).where(Editor.disabled_at.is_not(None))).all() == []


# --- the mail queue ---------------------------------------------------------------------------


def test_mail_list_send_and_retry(make_app, topics):
    port = free_port()
    app = make_app(transport=f"smtp://127.0.0.1:{port}?timeout=2", max_attempts=1)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["subscribers", "add", "cy@example.org", "--pending"]).exit_code == 0
    down = runner.invoke(args=["mail", "send"])
    assert down.exit_code == 1 and "stays queued" in down.output
    listing = json.loads(runner.invoke(args=["mail", "list", "--json"]).output)
    assert listing["counts"]["pending"] == 1 and listing["mail"][0]["to_email"] == "cy@example.org"
    smtp = SmtpSink(port=port, respond=lambda rcpt: "550 5.1.1 unknown user")
    smtp.start()
    try:
        assert runner.invoke(args=["mail", "send"]).exit_code == 1  # one failed
        assert "failed" in runner.invoke(args=["mail", "list", "--status", "failed"]).output
        smtp.respond = None
        with session_scope() as session:  # the bounce suppressed the address: let it in again
            from newsletter.suppression import unsuppress

            unsuppress(session, "cy@example.org")
        [mail] = queued_mail()
        assert runner.invoke(args=["mail", "retry", str(mail.id)]).exit_code == 0
        assert runner.invoke(args=["mail", "retry", str(mail.id)]).exit_code == 1  # not failed any more
        assert runner.invoke(args=["mail", "retry"]).exit_code == 2
        result = runner.invoke(args=["mail", "send"])
        assert result.exit_code == 0 and "1 sent" in result.output
        assert smtp.wait_for(1)[0].rcpt_tos == ["cy@example.org"]
    finally:
        smtp.stop()


# --- the command itself -----------------------------------------------------------------------


def test_version_and_help_list_every_group(tmp_path):
    version = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.returncode == 0 and version.stdout.startswith("newsletter 0.")
    helped = subprocess.run(
        [sys.executable, "-m", "newsletter", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "NEWSLETTER_INSTANCE_PATH": str(tmp_path / "i")},
    )
    for group in ("articles", "sections", "subscribers", "issue", "editor", "mail", "doctor"):
        assert group in helped.stdout
