"""One finding of ``newsletter doctor``: pass, warn, fail or skip, what was
seen, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
ORDER = {FAIL: 0, WARN: 1, PASS: 2, SKIP: 3}


@dataclass
class Finding:
    check: str  # a short stable name: spf, dkim, dmarc, transport, …
    title: str  # what was checked, for people
    status: str  # pass | warn | fail | skip
    detail: str  # what was seen
    fix: str = ""  # what to do about a warn or fail

    def as_dict(self) -> dict:
        return asdict(self)


def summary(findings: list[Finding]) -> dict[str, int]:
    counts = dict.fromkeys((PASS, WARN, FAIL, SKIP), 0)
    for finding in findings:
        counts[finding.status] += 1
    return counts
