"""Regenerate migrations/versions/0001_initial.py from newsletter/models.py.

Until the first release there is one initial revision; while the schema is
still moving, developers change models.py and run this script instead of
stacking revisions nobody has applied yet. After a release, use
``alembic revision --autogenerate`` as usual.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from newsletter.db import alembic_config

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "migrations" / "versions" / "0001_initial.py"


def main() -> None:
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/empty.db"
        cfg = alembic_config(url)
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    generated = next((ROOT / "migrations" / "versions").glob("0001_*.py"))
    text = "\n".join(line.rstrip() for line in generated.read_text().splitlines()) + "\n"
    TARGET.write_text(text)
    generated.unlink()
    # Keep the generated file as tidy as the rest of the tree (ruff is a test dependency).
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "-q", str(TARGET)], check=False)
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
