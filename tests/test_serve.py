"""`newsletter serve` and `newsletter demo` run the product under waitress."""

from __future__ import annotations

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
