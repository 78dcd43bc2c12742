"""`newsletter serve` and `newsletter demo` run the product under waitress."""

from __future__ import annotations

from contextlib import closing

import pytest
import requests

from tests.helpers import start_newsletter, stop_process

pytestmark = pytest.mark.slow  # real `newsletter serve` / `newsletter demo` processes


def test_serve_migrates_and_answers_under_waitress(tmp_path):
    proc, url = start_newsletter(["serve"], tmp_path)
    try:
        response = requests.get(f"{url}/", timeout=5)
        assert response.status_code == 200
        assert response.headers["Server"] == "get-the-signal"  # waitress, not the Flask dev server
        assert "GET THE SIGNAL" in response.text
    finally:
        stop_process(proc)
    assert (tmp_path / "serve.db").exists()


def test_demo_serves_sample_content_with_the_outbox(tmp_path):
    proc, url = start_newsletter(["demo"], tmp_path, {"NEWSLETTER_TRANSPORT": "outbox://"})
    try:
        front = requests.get(f"{url}/", timeout=5)
        assert front.status_code == 200
        assert "AI Agents" in front.text  # the demo's sections are the subscribe form's topics
        outbox = requests.get(f"{url}/outbox", timeout=5)  # readers' mail: behind the editor login
        assert outbox.status_code == 200 and "/editor/login" in outbox.url
        assert requests.get(f"{url}/editor/login", timeout=5).status_code == 200
    finally:
        output = stop_process(proc)
    assert "outbox://" in output
    assert "editor@example.org /" in output
    assert "Issue 001" in output  # a first draft is waiting in the editor


def test_sigterm_stops_serve_cleanly_and_frees_the_scheduler_lock(tmp_path):
    """systemd's stop (SIGTERM) ends serve through its exit handlers: the
    scheduler lock row is deleted at once, so a restarted serve or a standing-by
    scheduler acts now, not when the lease runs out."""
    proc, _ = start_newsletter(["serve"], tmp_path)
    database = tmp_path / "serve.db"
    try:
        assert _lock_holders(database), "serve's scheduler holds the lock while it runs"
    finally:
        output = stop_process(proc)
    assert proc.returncode == 0, output
    assert _lock_holders(database) == []


def _lock_holders(database) -> list[str]:
    import sqlite3

    from newsletter.models import SchedulerLock

    with closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute(f"SELECT holder FROM {SchedulerLock.__tablename__}")]
