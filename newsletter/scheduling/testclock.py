"""A test-only clock for real subprocesses: NEWSLETTER_TEST_CLOCK_FILE.

End-to-end tests start real ``newsletter scheduler`` processes and must move
their time to the next weekly slot without waiting a week. When
NEWSLETTER_ENV=testing and NEWSLETTER_TEST_CLOCK_FILE names a file, the
process's ``newsletter.clock.now()`` becomes the wall clock plus the number
of seconds written in that file (re-read whenever the file changes), so a
test moves every process at once by rewriting one number. It is ignored
outside the testing environment, so a stray variable cannot move a
production clock.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from newsletter import clock

ENV_VAR = "NEWSLETTER_TEST_CLOCK_FILE"


class FileOffsetClock:
    def __init__(self, path: str):
        self.path = Path(path)
        self._mtime: int | None = None
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def offset(self) -> timedelta:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return timedelta(0)
        with self._lock:
            if mtime != self._mtime:
                raw = self.path.read_text().strip()
                try:
                    self._offset = timedelta(seconds=float(raw or 0))
                    self._mtime = mtime
                except ValueError:
                    pass  # half-written: keep the previous offset, read again next time
            return self._offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset()


def write_offset(path: str | Path, target: datetime) -> None:
    """Make processes reading ``path`` believe it is now ``target`` (atomic rename)."""
    offset = (target - datetime.now(UTC)).total_seconds()
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{offset:.6f}\n")
    os.replace(tmp, path)


def install_from_env(settings) -> bool:
    """Install the file clock if asked for and allowed; True when installed."""
    path = os.environ.get(ENV_VAR)
    if not path or settings.env != "testing":
        return False
    clock.set_source(FileOffsetClock(path))
    return True
