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


_COLLECTOR_PROBE = """
import gc, sys
collections_while_importing = []

def watch(phase, info):
    module = sys.modules.get("newsletter.delivery.send_cli")
    if phase == "start" and not hasattr(module, "standalone"):
        collections_while_importing.append(info["generation"])

gc.callbacks.append(watch)
import newsletter.__main__ as entry
sys.argv = ["newsletter", "issue", "send", "--help"]
try:
    entry.main()
except SystemExit:
    pass
from sqlalchemy.orm import Session
from newsletter.models import Delivery
reachable = {id(o) for o in gc.get_objects()}
print("collections while importing:", collections_while_importing)
print("enabled:", gc.isenabled(), "frozen:", gc.get_freeze_count())
print("Session class collectable:", id(Session) in reachable, "Delivery class collectable:", id(Delivery) in reachable)
"""


def test_issue_send_imports_without_the_collector_and_freezes_what_it_imported():
    """The send path's imports make many objects and almost no garbage: the
    entry point imports them with the cyclic collector paused (it would walk
    them some two hundred times), then freezes them out of its reach and
    turns it back on. The classes imported stay alive and are never walked
    again; the collector works for everything made afterwards."""
    result = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "collections while importing: []" in result.stdout
    assert "enabled: True" in result.stdout
    assert "Session class collectable: False Delivery class collectable: False" in result.stdout
    frozen = int(result.stdout.split("frozen:", 1)[1].split()[0])
    assert frozen > 10_000, result.stdout
