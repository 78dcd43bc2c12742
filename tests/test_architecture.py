"""The house rules that keep the layout readable: one import direction
(checked by import-linter in CI), every module placed in a layer, and the
sending engine free of the web app."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB_MODULES = (
    "flask_login",
    "flask_wtf",
    "flask_limiter",
    "newsletter.app",
    "newsletter.extensions",
    "newsletter.web",
)


def _imported_after(statement: str) -> set[str]:
    """The modules loaded by running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(result.stdout.split())


def test_the_delivery_engine_loads_no_web_app():
    """The sending processes and the Dramatiq workers import the engine, never
    Flask's web extensions, the app or any view."""
    loaded = _imported_after(
        "from newsletter.delivery import deliver, dispatch, processes, worker  # noqa: F401"
    )
    assert "newsletter.delivery.dispatch" in loaded  # the statement really imported the engine
    web = sorted(m for m in loaded if m in WEB_MODULES or m.endswith(".views") or ".views_" in m)
    assert web == [], f"the delivery engine imports {web}"


def test_the_scheduler_jobs_load_no_web_app():
    loaded = _imported_after("from newsletter.scheduling import jobs  # noqa: F401")
    assert "newsletter.scheduling.jobs" in loaded
    assert not [m for m in loaded if m in WEB_MODULES or m.endswith(".views")]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [layers] = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return [item.strip() for layer in layers for item in layer.replace("|", ":").split(":")]


def test_every_module_is_placed_in_a_layer():
    """A module the layers contract does not name would escape the import
    rules; a new module must be given its layer in pyproject.toml."""
    items = _layers()
    unplaced = []
    for path in sorted((ROOT / "newsletter").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name == "newsletter":
            continue
        if not any(
            name == item or name.startswith(item + ".") or item.startswith(name + ".") for item in items
        ):
            unplaced.append(name)
    assert unplaced == []


def test_import_linter_keeps_every_contract():
    """The same check CI runs (``lint-imports``): no upward import, no cycle."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_issue_send_starts_without_what_a_plain_send_does_not_use():
    """`newsletter issue send` (one process, no DKIM key, no broker) does not
    wait for Flask, requests (webhooks and ESP APIs), dkimpy, Dramatiq,
    multiprocessing, or the parsers of settings left at their defaults
    (APScheduler's cron, limits): each is imported where it is used."""
    loaded = _imported_after(
        "import tempfile\n"
        "import newsletter.__main__\n"
        "from newsletter.config import load_settings\n"
        "from newsletter.delivery import send_cli\n"
        "from newsletter.delivery.transports import make_transport\n"
        "load_settings(environ={'NEWSLETTER_INSTANCE_PATH': tempfile.mkdtemp()}, dotenv=False)\n"
        "make_transport('smtp://127.0.0.1:25')"
    )
    assert {"newsletter.delivery.send_cli", "newsletter.delivery.transports.smtp"} <= loaded
    unused = {"flask", "requests", "dkim", "dramatiq", "multiprocessing", "limits", "apscheduler"}
    assert sorted(loaded & unused) == []
