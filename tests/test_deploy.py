"""deploy/: the systemd units pass `systemd-analyze verify` (pointed at this
virtualenv's `newsletter` and `gunicorn`, which must exist: verify checks
every ExecStart), carry the hardening they promise, and the web unit's
gunicorn command really serves the app."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import require, start_newsletter, stop_process

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
BIN = Path(sys.executable).parent
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
}


def _service(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return dict(parser["Service"])


def test_there_is_a_unit_for_each_role():
    assert [u.name for u in UNITS] == [
        "newsletter-scheduler.service",
        "newsletter-web.service",
        "newsletter-worker.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_each_unit_is_hardened_and_runs_as_its_own_user(unit):
    service = _service(unit)
    assert service["User"] == "newsletter" and service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/newsletter/newsletter.env"
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{unit.name}: {key}"


def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is missing (apt-get install systemd)")
    require((BIN / "gunicorn").exists(), "gunicorn is missing (pip install -e '.[test]')")
    for unit in UNITS:
        text = unit.read_text().replace("/opt/newsletter/bin/", f"{BIN}/")
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # …and it does fail on a unit that cannot work, so the check above means something.
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=/nonexistent/newsletter scheduler\n")
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True).returncode != 0


@pytest.mark.slow
def test_the_web_units_gunicorn_command_serves_the_app(tmp_path):
    require((BIN / "gunicorn").exists(), "gunicorn is missing (pip install -e '.[test]')")
    exec_start = _service(ROOT / "deploy/systemd/newsletter-web.service")["ExecStart"]
    assert "'newsletter.app:create_app()'" in exec_start
    upgrade = subprocess.run(
        [sys.executable, "-m", "newsletter", "db", "upgrade"],
        cwd=tmp_path,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
             "NEWSLETTER_INSTANCE_PATH": str(tmp_path / "instance")},
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr

    def gunicorn(port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "newsletter.app:create_app()",
        ]

    proc, url = start_newsletter([], tmp_path, argv=gunicorn)
    try:
        assert requests.get(f"{url}/", timeout=60).status_code == 200
    finally:
        stop_process(proc)
