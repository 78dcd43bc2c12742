"""`newsletter issue send|status|pause|resume|cancel-send|test`, an ESP that
answers 429 during a whole send, and the rate limiters."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from newsletter.db import init_engine
from newsletter.delivery import send
from newsletter.delivery.deliver import deliver
from newsletter.delivery.ratelimit import RedisTokenBucket, TokenBucket
from tests.delivery_fixtures import (
    add_subscribers,
    command_env,
    deliveries,
    issue_row,
    make_issue,
    run_python,
)
from tests.helpers import FakeProvider, require, run_concurrently


@pytest.fixture
def cli(make_app, smtp_server):
    def run(*args, input=None, **overrides):
        app = make_app(transport=smtp_server.dsn, **overrides)
        init_engine(app.extensions["signal_settings"].database_url)
        return app.test_cli_runner().invoke(args=list(args), input=input)

    return run


def test_status_of_an_unknown_issue_exits_non_zero(cli):
    result = cli("issue", "status", "404")
    assert result.exit_code == 1
    assert "there is no issue 404" in result.output


def test_send_shows_the_outcome_and_exits_zero_when_all_delivered(cli, make_settings, smtp_server):
    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 7)
    result = cli("issue", "send", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "issue 1: sent — 7 sent, 0 failed, 0 skipped, 0 remaining of 7" in result.output
    assert len(smtp_server.wait_for(7)) == 7
    status = cli("issue", "status", "1")
    assert status.exit_code == 0 and "7 sent" in status.output
    again = cli("issue", "send", "1", "--yes")
    assert again.exit_code == 2 and "is sent" in again.output


def test_send_exits_non_zero_when_anything_failed(cli, make_settings, smtp_server):
    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 4)
    smtp_server.respond = lambda rcpt: "550 5.1.1 unknown user" if rcpt == "reader2@example.org" else None
    result = cli("issue", "send", "1", "--yes")
    assert result.exit_code == 1, result.output
    assert "3 sent, 1 failed" in result.output
    assert "bounced: 550 5.1.1 unknown user" in result.output


def test_send_asks_before_sending(cli, make_settings, smtp_server):
    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 2)
    result = cli("issue", "send", "1", input="n\n")
    assert result.exit_code != 0 and "Send issue 1 to 2 readers" in result.output
    assert smtp_server.messages == []
    assert issue_row(settings, 1).status == "approved"


def test_pause_resume_cancel_commands(cli, make_settings):
    settings = make_settings()
    make_issue(settings, 1)
    add_subscribers(settings, 3)
    send.start_send(settings, 1)
    assert cli("issue", "pause", "1").exit_code == 0
    paused = cli("issue", "send", "1", "--yes")
    assert paused.exit_code == 3 and "resume" in paused.output
    assert cli("issue", "resume", "1").exit_code == 0
    cancelled = cli("issue", "cancel-send", "1", "--yes")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output and "3 skipped" in cancelled.output
    assert cli("issue", "pause", "1").exit_code == 2


def test_test_send_prefixes_subject_and_records_nothing(cli, make_settings, smtp_server):
    settings = make_settings()
    make_issue(settings, 1, status="draft")
    result = cli("issue", "test", "1", "editor@example.org", "--topics", "agents")
    assert result.exit_code == 0, result.output
    [message] = smtp_server.wait_for(1)
    parsed = message.message
    assert parsed["Subject"].startswith("[TEST] Issue 001")
    assert "Agents story 0" in message.text and "Safety story 0" not in message.text
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert deliveries(settings) == []
    bad = cli("issue", "test", "1", "not-an-address")
    assert bad.exit_code == 1


def test_esp_answering_429_slows_the_send_down_and_everything_arrives(make_settings):
    calls = []

    def answer(request):
        calls.append(time.monotonic())
        assert request["headers"].get("Authorization") == "Bearer re-key"
        batch = json.loads(request["body"])
        if len(calls) in (1, 2):
            return (
                429,
                {"retry-after": "1"},
                {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests"},
            )
        return 200, {}, {"data": [{"id": f"re-{len(calls)}-{i}"} for i in range(len(batch))]}

    server = FakeProvider(answer)
    try:
        settings = make_settings(
            transport=f"resend://re-key@default?endpoint={server.url}", send_concurrency=1
        )
        init_engine(settings.database_url)
        make_issue(settings, 1)
        add_subscribers(settings, 250)
        counts = deliver(settings, 1, here=True)
    finally:
        server.stop()
    assert (counts.status, counts.sent, counts.failed) == ("sent", 250, 0)
    assert calls[1] - calls[0] >= 0.9 and calls[2] - calls[1] >= 0.9, "Retry-After was honoured"
    rows = deliveries(settings)
    assert Counter(r.status for r in rows) == {"sent": 250}
    assert {r.attempts for r in rows} == {1}, "throttling is not charged as an attempt"
    assert all(r.provider_message_id.startswith("re-") for r in rows)


def test_token_bucket_reserves_and_waits():
    now = [0.0]
    slept = []
    bucket = TokenBucket(5, monotonic=lambda: now[0], sleep=slept.append)
    assert bucket.acquire(5) == 0.0  # the saved-up second
    assert bucket.acquire(10) == pytest.approx(2.0)  # 10 more at 5/s
    now[0] += 2.0
    assert bucket.acquire(5) == pytest.approx(1.0)
    assert slept == [pytest.approx(2.0), pytest.approx(1.0)]
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_token_bucket_is_shared_by_threads():
    now = [0.0]
    bucket = TokenBucket(100, monotonic=lambda: now[0], sleep=lambda s: None)
    waits = []
    errors = run_concurrently(lambda: waits.append(bucket.reserve(50)), 4)
    assert sorted(waits) == [
        pytest.approx(0.0),
        pytest.approx(0.0),
        pytest.approx(0.5),
        pytest.approx(1.0),
    ], errors


def test_redis_token_bucket_shares_one_rate_between_processes():
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    try:
        client.ping()
    except redis.ConnectionError:
        require(False, "Redis is not running on 127.0.0.1:6379")
    key = f"gts:test-rate:{time.time_ns()}"
    one = RedisTokenBucket("redis://127.0.0.1:6379/15", 10, key=key)
    two = RedisTokenBucket("redis://127.0.0.1:6379/15", 10, key=key)
    assert one.reserve(10) == pytest.approx(0.0, abs=0.05)
    assert two.reserve(10) == pytest.approx(1.0, abs=0.05), (
        "the second worker waits for the first one's tokens"
    )
    assert one.reserve(5) == pytest.approx(1.5, abs=0.05)
    client.delete(key)


@pytest.mark.slow
def test_the_send_command_a_user_runs_sends_without_the_web_app(make_settings, smtp_server, tmp_path):
    """`newsletter issue send` as a real process, with two sending processes:
    everyone gets the issue once, the exit code and summary are the app
    CLI's, and the command never imported the web app (`-X importtime`
    lists every module the process loaded)."""
    settings = make_settings(transport=smtp_server.dsn)
    make_issue(settings, 1)
    add_subscribers(settings, 30)
    env = command_env(
        settings, NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"), NEWSLETTER_SEND_PROCESSES="2"
    )
    result = run_python(
        "-X", "importtime", "-m", "newsletter", "issue", "send", "1", "--yes", env=env, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "issue 1: sent — 30 sent, 0 failed, 0 skipped, 0 remaining of 30" in result.stdout
    assert Counter(m.to for m in smtp_server.wait_for(30)) == {f"reader{i}@example.org": 1 for i in range(30)}
    loaded = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "import time:" in line}
    assert "newsletter.delivery.dispatch" in loaded, "the importtime listing really names modules"
    web = {"newsletter.app", "newsletter.extensions", "flask_wtf", "flask_login", "flask_limiter"}
    assert not loaded & web
    assert not [
        m for m in loaded if m.endswith(".views") or ".views_" in m or m.startswith("newsletter.editor")
    ]


def test_the_send_command_reports_an_unknown_issue_and_bad_settings(make_settings, tmp_path):
    """The standalone `issue send` keeps the app CLI's errors and exit codes."""
    settings = make_settings()
    env = command_env(settings, NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"))
    command = ["-m", "newsletter", "issue", "send", "404", "--yes"]
    unknown = run_python(*command, env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "there is no issue 404" in unknown.stderr
    env["NEWSLETTER_TRANSPORT"] = "carrier-pigeon://coop"
    bad = run_python(*command, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "configuration error" in bad.stderr and "carrier-pigeon" in bad.stderr
    usage = run_python(*command[:-2], "not-a-number", env=env, cwd=tmp_path)
    assert usage.returncode == 2
