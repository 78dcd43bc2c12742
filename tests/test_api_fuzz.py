"""The OpenAPI document matches the server: schemathesis (every check)
against a live `newsletter serve` on a scratch database, with a token of
every scope, some articles and a draft issue to act on; any finding fails.

A bounded, seeded run: all four phases, every one of the 27 operations, at
most 15 examples an operation in the fuzzing phase and 15 stateful
scenarios, and the coverage phase in full (its boundary and invalid values
for every keyword of the schema, the phase that finds mismatches between
the document and the checks the server makes). About 1,600 test cases, 20 s.

No time budget by default. Under ``--max-time`` (60 s until 2026-11-30)
schemathesis keeps drawing fuzzing and stateful cases until the budget is
spent, so the run always took the whole minute: about 3,200 cases, the
extra ones more random draws of the same operations.
``NEWSLETTER_FUZZ_SECONDS`` asks for such a longer, time-bound run.
Settings: tests/api_fuzz.toml (what a schema-valid request may still be
refused with, and why), hooks: tests/api_fuzz_hooks.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_DB_URL, create_pg_database, drop_pg_database
from tests.helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NEWSLETTER = str(BIN / "newsletter")
SCHEMATHESIS = str(BIN / "schemathesis")
# 0: no time budget, the examples bound the run
MAX_TIME = int(os.environ.get("NEWSLETTER_FUZZ_SECONDS", "0"))
ARTICLES = [
    {
        "external_id": f"a{n}",
        "title": f"{tag} story {n}",
        "url": f"https://example.org/{tag}/{n}",
        "tags": [tag],
    }
    for n, tag in enumerate(["agents", "ethics", "agents", "models"])
]


@pytest.fixture
def fuzz_database_url(tmp_path):
    """PostgreSQL when the suite runs on it (a database of its own), else a SQLite file."""
    if TEST_DB_URL:
        name = f"signal_fuzz_{uuid.uuid4().hex[:8]}"
        yield create_pg_database(TEST_DB_URL, name)
        drop_pg_database(TEST_DB_URL, name)
    else:
        yield f"sqlite:///{tmp_path / 'fuzz.db'}"


def test_schemathesis_finds_nothing(tmp_path, fuzz_database_url):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "NEWSLETTER_ENV": "development",
        "NEWSLETTER_DATABASE_URL": fuzz_database_url,
        "NEWSLETTER_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "NEWSLETTER_TRANSPORT": "outbox://",
        # the fuzzer sends thousands of requests: the limits are tested elsewhere
        "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "1000000/minute",
        "NEWSLETTER_CONFIRM_MAX_PER_DAY": "1000000",
        "NEWSLETTER_API_RATE_LIMIT": "1000000/minute",
    }
    (tmp_path / "articles.json").write_text(json.dumps(ARTICLES))

    def cli(*args: str) -> str:
        done = subprocess.run(
            [NEWSLETTER, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("db", "upgrade")
    cli("articles", "import", "articles.json")
    cli("issue", "assemble")
    token = cli("token", "create", "--name", "fuzz", "--scope", "*").strip()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [NEWSLETTER, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(ROOT / "tests" / "api_fuzz.toml"),
                "run",
                f"http://127.0.0.1:{port}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--max-examples",
                "15",
                *(["--max-time", str(MAX_TIME)] if MAX_TIME else []),
                "--workers",
                "1",
                "--seed",
                os.environ.get("NEWSLETTER_FUZZ_SEED", "18"),
                "--no-color",
            ],  # fmt: skip
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=MAX_TIME + 300,
        )
    finally:
        server.terminate()
        server.wait(20)
        log.close()
    served = (tmp_path / "serve.log").read_text(errors="replace")
    errors = served[served.find("Traceback") :][:6000] if "Traceback" in served else ""
    assert run.returncode == 0, run.stdout[-15000:] + run.stderr[-3000:] + errors
    assert "27/27" in run.stdout or "Tested:" in run.stdout
