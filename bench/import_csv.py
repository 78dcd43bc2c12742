"""Import N readers from a generated CSV file and print throughput and peak RSS.

    .venv/bin/python bench/import_csv.py [ROWS] [--database-url URL]

Memory must stay flat as the file grows: run with 10000 and with 100000 and
compare the peak RSS figures (the file is streamed, never loaded).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from newsletter import db
    from newsletter.config import load_settings
    from newsletter.db import session_scope
    from newsletter.models import Tag
    from newsletter.readers.csv_io import export_csv, import_csv

    work = Path(tempfile.mkdtemp(prefix="signal-bench-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    settings = load_settings(
        environ={},
        env="testing",
        database_url=url,
        secret_key="b" * 40,
        instance_path=str(work / "instance"),
        transport="outbox://",
    )
    db.init_engine(url)
    db.upgrade(url)
    with session_scope() as session:
        for i, slug in enumerate(("agents", "models", "tools")):
            session.add(Tag(slug=slug, name=slug.title(), position=i))

    path = work / "readers.csv"
    with path.open("w") as out:
        out.write("email,name,topics\n")
        for i in range(args.rows):
            topics = ("agents", "models;tools", "")[i % 3]
            out.write(f"reader{i}@example.org,Reader {i},{topics}\n")
            if i % 1000 == 999:
                out.write("not-an-address,Broken,\n")  # one hostile line per thousand
    print(f"file: {path.stat().st_size / 1e6:.1f} MB, {args.rows} rows; RSS before import {rss_mb():.0f} MB")

    started = time.perf_counter()
    with path.open("rb") as stream:
        report = import_csv(settings, stream)
    took = time.perf_counter() - started
    print(
        f"import: {report.imported} imported, {report.rejected_total} rejected in {took:.1f} s "
        f"({report.imported / took:,.0f} rows/s); peak RSS {rss_mb():.0f} MB"
    )

    started = time.perf_counter()
    with open("/dev/null", "w") as sink, session_scope() as session:
        count = export_csv(session, sink)
    took = time.perf_counter() - started
    print(f"export: {count} rows in {took:.1f} s ({count / took:,.0f} rows/s); peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
