"""Installs anywhere: the wheel built from the project carries the templates,
the static files and the migrations, and the package found outside the
source tree migrates a database and serves pages from an empty folder.
(CI also installs the wheel into a fresh virtualenv: .ci/run.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import requests

from tests.helpers import start_newsletter, stop_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    [built] = out.glob("get_the_signal-*.whl")
    return built


def _shipped(folder: str, inside: str) -> set[str]:
    base = ROOT / folder
    return {
        f"newsletter/{inside}/{p.relative_to(base).as_posix()}"
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_wheel_carries_every_template_migration_static_file_and_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _shipped("templates", "templates") | _shipped("migrations", "migrations")
    expected |= _shipped("newsletter/static", "static")
    expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "newsletter").rglob("*.py")}
    assert expected - names == set()
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "newsletter = newsletter.__main__:main" in entry


def test_every_subpackage_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "newsletter").rglob("__init__.py")}
    assert found - set(config["packages"]) == set()


def test_the_installed_package_migrates_and_serves_from_an_empty_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "PYTHONPATH": str(site),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{empty / 'installed.db'}",
        "NEWSLETTER_INSTANCE_PATH": str(empty / "instance"),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import newsletter.paths as p; print(p.TEMPLATES); print(p.MIGRATIONS)"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        check=True,
    )
    assert where.stdout.split() == [str(site / "newsletter/templates"), str(site / "newsletter/migrations")]
    upgrade = subprocess.run(
        [sys.executable, "-m", "newsletter", "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    proc, url = start_newsletter(
        ["serve"], empty, {"PYTHONPATH": str(site), "NEWSLETTER_DATABASE_URL": env["NEWSLETTER_DATABASE_URL"]}
    )
    try:
        front = requests.get(f"{url}/", timeout=10)
        assert front.status_code == 200 and "GET THE SIGNAL" in front.text
        assert requests.get(f"{url}/static/style.css", timeout=10).status_code == 200
        assert requests.get(f"{url}/editor/login", timeout=10).status_code == 200
    finally:
        stop_process(proc)
