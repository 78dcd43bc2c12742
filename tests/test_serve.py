"""`newsletter serve` and `newsletter demo` run the product under waitress."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port

pytestmark = pytest.mark.slow  # real `newsletter serve` / `newsletter demo` processes

ROOT = Path(__file__).resolve().parent.parent


def _start(args, tmp_path, env_extra=None):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}",
    )
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{args} exited early:\n{proc.stdout.read()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{args} did not answer in time:\n{proc.stdout.read()}")


def _stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_serve_migrates_and_answers_under_waitress(tmp_path):
    proc, url = _start(["serve"], tmp_path)
    try:
        response = requests.get(f"{url}/", timeout=5)
        assert response.status_code == 200
        assert response.headers["Server"] == "get-the-signal"  # waitress, not the Flask dev server
        assert "GET THE SIGNAL" in response.text
    finally:
        _stop(proc)
    assert (tmp_path / "serve.db").exists()


def test_demo_serves_sample_content_with_the_outbox(tmp_path):
    proc, url = _start(["demo"], tmp_path, {"NEWSLETTER_TRANSPORT": "outbox://"})
    try:
        front = requests.get(f"{url}/", timeout=5)
        assert front.status_code == 200
        assert "AI Agents" in front.text  # the demo's sections are the subscribe form's topics
        outbox = requests.get(f"{url}/outbox", timeout=5)  # readers' mail: behind the editor login
        assert outbox.status_code == 200 and "/editor/login" in outbox.url
        assert requests.get(f"{url}/editor/login", timeout=5).status_code == 200
    finally:
        output = _stop(proc)
    assert "outbox://" in output
    assert "editor@example.org /" in output
    assert "Issue 001" in output  # a first draft is waiting in the editor
