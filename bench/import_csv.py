"""Import N readers from a generated CSV file and print throughput and peak RSS.

    .venv/bin/python bench/import_csv.py [ROWS] [--layout csv|mailchimp] [--dry-run] [--database-url URL]

Memory must stay flat as the file grows: run with 100000 and with 1000000 and
compare the peak RSS figures (the file is streamed, never loaded). With
``--layout mailchimp`` the file is a Mailchimp audience export (semicolons,
Windows-1252, names, tags, one reader in twenty unsubscribed and one in
fifty cleaned); ``--dry-run`` measures the preview (everything applied in one
transaction, rolled back).
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
    parser.add_argument("--layout", choices=("csv", "mailchimp"), default="csv")
    parser.add_argument("--dry-run", action="store_true")
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
    if args.layout == "csv":
        with path.open("w") as out:
            out.write("email,name,topics\n")
            for i in range(args.rows):
                topics = ("agents", "models;tools", "")[i % 3]
                out.write(f"reader{i}@example.org,Reader {i},{topics}\n")
                if i % 1000 == 999:
                    out.write("not-an-address,Broken,\n")  # one hostile line per thousand
    else:
        with path.open("w", encoding="cp1252", newline="") as out:
            out.write(
                "Email Address;First Name;Last Name;MEMBER_RATING;OPTIN_TIME;CONFIRM_TIME;UNSUB_TIME;CLEAN_TIME;TAGS\r\n"
            )
            for i in range(args.rows):
                unsub = "2023-06-06 12:56:15" if i % 20 == 7 else ""
                clean = "2022-02-02 02:02:02" if i % 50 == 11 else ""
                tags = ('"Agents","VIP"', '"Tools"', "")[i % 3]
                out.write(
                    f"reader{i}@example.org;Zoë {i};Müller;3;2020-01-05 10:00:00;2020-01-05 10:02:13;{unsub};{clean};{tags}\r\n"
                )
    print(
        f"file: {path.stat().st_size / 1e6:.1f} MB, {args.rows} rows ({args.layout}); RSS before import {rss_mb():.0f} MB"
    )

    started = time.perf_counter()
    with path.open("rb") as stream:
        report = import_csv(settings, stream, dry_run=args.dry_run, name=path.name)
    took = time.perf_counter() - started
    rows = sum(f.rows for f in report.files)
    counts = ", ".join(f"{label} {count}" for _, label, count in report.summary)
    print(
        f"import{' (dry run)' if args.dry_run else ''}: {rows} rows in {took:.1f} s ({rows / took:,.0f} rows/s); "
        f"peak RSS {rss_mb():.0f} MB"
    )
    print(f"  {report.files[0].layout}, {report.files[0].encoding}, {report.files[0].delimiter}: {counts}")

    started = time.perf_counter()
    with open("/dev/null", "w") as sink, session_scope() as session:
        count = export_csv(session, sink)
    took = time.perf_counter() - started
    print(f"export: {count} rows in {took:.1f} s ({count / took:,.0f} rows/s); peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
