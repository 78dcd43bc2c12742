"""Rendering figures: compile time per variant of a 30-article issue, and
personalisation time per recipient.

    .venv/bin/python bench/render.py [--recipients 20000]

Runs against a throw-away SQLite database in a temporary directory. Prints:
- the compile time per variant, HTML and text (what freeze_issue pays for
  each variant: Jinja with the real values, then mjml-python), and how it
  splits into the Jinja render, the MJML compile and the text part,
- the same with the database reads a preview makes,
- personalisation per recipient (token signing + substitution), and the
  cost of tokens.make_token alone for reference.
Targets: compile < 20 ms per variant, personalisation < 20 µs per message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter import clock, db, tokens  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.content.service import upsert_articles  # noqa: E402
from newsletter.db import session_scope  # noqa: E402
from newsletter.issues.service import assemble_issue, get_issue  # noqa: E402
from newsletter.models import Tag  # noqa: E402
from newsletter.rendering import compiled, placeholders  # noqa: E402
from newsletter.rendering.issue import issue_sections, render_variant, render_view  # noqa: E402
from newsletter.rendering.mjml import compile_mjml  # noqa: E402
from newsletter.rendering.personalise import personalise  # noqa: E402
from newsletter.rendering.view import build_view  # noqa: E402

SECTIONS = ("ai-agents", "ai-ethics", "data", "research", "tools")
NAMES = {
    "ai-agents": "AI Agents",
    "ai-ethics": "AI Ethics",
    "data": "Data",
    "research": "Research",
    "tools": "Tools",
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def setup(tmp: Path):
    url = f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(
        environ={}, database_url=url, secret_key="bench-" + "k" * 40, env="testing",
        instance_path=str(tmp), section_limit=6, issue_limit=30,
    )  # fmt: skip
    db.upgrade(url)
    db.init_engine(url)
    now = datetime(2026, 3, 2, 8, tzinfo=UTC)
    clock.set(now)
    with session_scope() as session:
        for i, slug in enumerate(SECTIONS):
            session.add(Tag(slug=slug, name=NAMES[slug], position=i))
    items = [
        {
            "external_id": f"bench-{n}",
            "url": f"https://example.com/articles/{n}-a-reasonably-long-slug-for-realism",
            "title": f"Article {n}: a headline of a realistic length about agents & data",
            "synopsis": "A two-sentence synopsis with **emphasis**, a [link](https://example.org/x) and some "
            "plain words to make it as long as the ones editors write. Second sentence here.",
            "author": "Ana Lee",
            "reading_minutes": 6,
            "published_at": (now - timedelta(hours=n + 1)).isoformat(),
            "tags": [SECTIONS[n % len(SECTIONS)]],
            **(
                {"image_url": f"https://cdn.example.com/{n}.png", "image_alt": "A chart"}
                if n % 6 == 0
                else {}
            ),
        }
        for n in range(30)
    ]
    upsert_articles(items, "api")
    issue = assemble_issue(settings).issue
    return settings, issue


def best(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, issue = setup(Path(tmp))
        with session_scope() as session:
            issue = get_issue(session, issue.number)
            sections = issue_sections(session, issue)
            count = sum(len(s.articles) for s in build_view(session, issue, settings, "").sections)
            print(f"issue: {issue.title} — {count} articles in {len(sections)} sections")

            low, median = best(lambda: build_view(session, issue, settings, ""), 30)
            print(
                f"load the issue's view from the database (once per freeze)   min {_ms(low)}  median {_ms(median)}"
            )
            full = build_view(session, issue, settings, "")
            variants = ["", *sections[:2], ",".join(sorted(sections[:3]))]
            for variant in variants:
                low, median = best(lambda v=variant: render_view(issue, full.only(v), v), 30)
                print(
                    f"compile variant {variant or '(all)':<28} HTML+text  min {_ms(low)}  median {_ms(median)}  (target < 20 ms)"
                )
            markers = placeholders.Printed(placeholders.new_nonce(), html=True)
            text_markers = placeholders.Printed(markers.nonce, html=False)
            source = compiled.render_mjml(full, markers)
            low, median = best(lambda: compiled.render_mjml(full, markers), 50)
            print(f"  of which Jinja → MJML source (all)                min {_ms(low)}  median {_ms(median)}")
            low, median = best(lambda: compile_mjml(source), 50)
            print(f"  of which MJML → HTML, mjml-python (all)           min {_ms(low)}  median {_ms(median)}")
            low, median = best(lambda: compiled.render_text(full, text_markers), 50)
            print(f"  of which the text part (all)                      min {_ms(low)}  median {_ms(median)}")
            low, median = best(lambda: render_variant(session, issue, "", settings), 30)
            print(f"render_variant incl. database (previews), all       min {_ms(low)}  median {_ms(median)}")
            render = render_variant(session, issue, "", settings)
        print(
            f"HTML size (all sections): {len(render.html.encode()) / 1024:.1f} KB; text {len(render.text.encode()) / 1024:.1f} KB"
        )

        personalise(
            render, settings, subscriber_id=1, email="x@example.org", name="Ana"
        )  # warm the split cache
        n = args.recipients

        def personalise_all():
            for i in range(n):
                personalise(render, settings, subscriber_id=i, email="reader@example.org", name="Ana Lee")

        def tokens_all():
            for i in range(n):
                tokens.make_token(settings.secret_key, "unsubscribe", i)

        low, median = best(personalise_all, 5)
        print(
            f"personalise per recipient (2 tokens + HTML + text)  min {low / n * 1e6:.1f} µs  median {median / n * 1e6:.1f} µs over {n} (target < 20 µs)"
        )
        low, median = best(tokens_all, 5)
        print(
            f"reference: tokens.make_token alone                  min {low / n * 1e6:.1f} µs  median {median / n * 1e6:.1f} µs per token"
        )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"(machine: {os.cpu_count()} CPUs, load average {load:.2f} — figures scale with load)")


if __name__ == "__main__":
    main()
