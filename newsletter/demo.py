"""Demo data for ``newsletter demo``: sections and a week of sample articles.

Idempotent: tags are matched by slug and articles by external id, so running
the demo again refreshes the sample rather than duplicating it. Article
times are spread over the last seven days (relative to the clock), so the
first ``newsletter issue assemble`` has something to put in an issue.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from newsletter import clock
from newsletter.config import private_file
from newsletter.content.service import upsert_articles
from newsletter.db import session_scope
from newsletter.editor.service import create_editor, set_password
from newsletter.issues.service import assemble_issue
from newsletter.models import Editor, Tag
from newsletter.readers.service import subscribe

SECTIONS = (
    ("ai-agents", "AI Agents", "Autonomous systems that plan, call tools and act."),
    ("ai-ethics", "AI Ethics", "Fairness, accountability, policy and the people affected."),
    ("data", "Data", "Datasets, pipelines and the plumbing under every model."),
    ("research", "Research", "Papers and results worth your time."),
    ("tools", "Tools", "Libraries, frameworks and products to try."),
)

# (slug, title, synopsis, author, minutes, tags)
ARTICLES = (
    (
        "agents-that-plan",
        "Agents that plan before they act",
        "A look at why **explicit planning steps** make tool-using agents more reliable, and where they still fail.",
        "Maya Okafor",
        7,
        ["ai-agents", "research"],
    ),
    (
        "tool-calling-budget",
        "Tool calling on a budget",
        "Cutting the cost of agent loops by caching tool results and bounding retries.",
        "Jon Reyes",
        5,
        ["ai-agents", "tools"],
    ),
    (
        "evals-for-agents",
        "How to evaluate an agent you cannot predict",
        "Scenario suites, replayable traces and the metrics that matter when outputs vary.",
        "Priya Natarajan",
        9,
        ["ai-agents", "research"],
    ),
    (
        "agent-memory",
        "Memory for long-running agents",
        "Three designs for agent memory compared: scratchpads, vector stores and summaries.",
        "Lena Brandt",
        6,
        ["ai-agents"],
    ),
    (
        "audit-trails",
        "Audit trails for automated decisions",
        "What regulators ask for when an algorithm decides, and how to log it without hoarding personal data.",
        "Samuel Adeyemi",
        8,
        ["ai-ethics"],
    ),
    (
        "consent-datasets",
        "Consent is not a checkbox",
        "Why dataset consent needs to be revocable, and a practical scheme for honouring it.",
        "Aiko Tanaka",
        6,
        ["ai-ethics", "data"],
    ),
    (
        "bias-in-ranking",
        "Bias hides in the ranking step",
        "Fair training data is not enough when the ranking layer learns old habits.",
        "Carla Mendes",
        7,
        ["ai-ethics", "research"],
    ),
    (
        "ai-act-checklist",
        "A plain-language AI Act checklist",
        "What small teams shipping AI features need to do this year, in ten questions.",
        "Tomasz Nowak",
        10,
        ["ai-ethics"],
    ),
    (
        "data-contracts",
        "Data contracts, one year in",
        "A team's honest account of schema contracts between producers and the ML platform.",
        "Ines Duarte",
        8,
        ["data"],
    ),
    (
        "synthetic-data-limits",
        "The limits of synthetic data",
        "Synthetic records help with privacy and scarcity; here is where they quietly hurt accuracy.",
        "Owen Clarke",
        7,
        ["data", "research"],
    ),
    (
        "feature-stores",
        "Do you still need a feature store?",
        "Warehouses caught up. A decision guide for 2026.",
        "Hana Kim",
        5,
        ["data", "tools"],
    ),
    (
        "lineage-lite",
        "Lineage without the platform",
        "Tracking where a number came from with three conventions and a little SQL.",
        "Ravi Menon",
        4,
        ["data"],
    ),
    (
        "small-models-win",
        "Small models, narrow tasks, big wins",
        "A benchmark of distilled models against frontier models on extraction tasks.",
        "Elena Petrova",
        9,
        ["research"],
    ),
    (
        "retrieval-eval",
        "Retrieval quality is the bottleneck",
        "New results show answer quality tracks retrieval recall more than model size.",
        "David Osei",
        8,
        ["research"],
    ),
    (
        "reasoning-traces",
        "What reasoning traces do and do not tell us",
        "A careful reading of recent work on chain-of-thought faithfulness.",
        "Sofia Rossi",
        11,
        ["research", "ai-ethics"],
    ),
    (
        "local-inference",
        "Local inference got practical",
        "Running capable models on a laptop: what works today and what it costs.",
        "Noah Fischer",
        6,
        ["tools"],
    ),
    (
        "prompt-tests",
        "Unit tests for prompts",
        "Treat prompts like code: fixtures, assertions and regression suites that run in CI.",
        "Grace Liu",
        5,
        ["tools", "ai-agents"],
    ),
    (
        "observability-llm",
        "Observability for LLM apps",
        "Tracing, cost and latency dashboards with open-source tools only.",
        "Mateo García",
        7,
        ["tools"],
    ),
    (
        "open-weights-policy",
        "Open weights and the policy debate",
        "Arguments on both sides, and the evidence each side tends to skip.",
        "Amara Nwosu",
        9,
        ["ai-ethics", "research"],
    ),
    (
        "agent-sandboxing",
        "Sandboxing agents that run code",
        "Containers, syscall filters and network policies for agents that execute what they write.",
        "Lukas Weber",
        8,
        ["ai-agents", "tools"],
    ),
)


def _ensure_sections() -> int:
    created = 0
    with session_scope() as session:
        for position, (slug, name, description) in enumerate(SECTIONS):
            tag = session.exec(select(Tag).where(Tag.slug == slug)).first()
            if tag is None:
                session.add(
                    Tag(slug=slug, name=name, description=description, position=position, is_section=True)
                )
                created += 1
    return created


DEMO_EDITOR = "editor@example.org"
DEMO_READERS = (
    ("ada@example.org", "Ada", ""),
    ("grace@example.org", "Grace", "ai-agents,tools"),
    ("alan@example.org", "Alan", "ai-ethics,research"),
)


def _demo_password(settings) -> str:
    """A random password kept in instance/ so every demo run prints the same one."""

    instance = Path(settings.instance_path)
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    return private_file(instance / "demo_editor_password", secrets.token_urlsafe(12))


def _ensure_editor(settings) -> list[str]:

    password = _demo_password(settings)
    with session_scope() as session:
        editor = session.exec(select(Editor).where(Editor.email == DEMO_EDITOR)).first()
        if editor is None:
            create_editor(session, DEMO_EDITOR, password, role="admin")
        else:
            set_password(session, editor, password)
    return [f"demo: editor login at {settings.base_url}/editor/login as {DEMO_EDITOR} / {password}"]


def _ensure_readers(settings) -> list[str]:
    """A few confirmed readers (consent source "editor"), so a send shows up in the outbox."""

    for email, name, topics in DEMO_READERS:
        subscribe(
            settings,
            email=email,
            name=name,
            topics=[t for t in topics.split(",") if t],
            source="editor",
            consent_text="Demo reader created by `newsletter demo`.",
            double_opt_in=False,
        )
    return [f"demo: {len(DEMO_READERS)} sample readers ({', '.join(e for e, _, _ in DEMO_READERS)})"]


def _ensure_draft(settings) -> list[str]:

    result = assemble_issue(settings)
    return [f"demo: {result.message}"]


def seed_demo(settings) -> list[str]:
    """Create sample sections, articles, readers, an editor and a first draft; return lines to print."""
    lines = _seed_content(settings)
    lines += _ensure_readers(settings)
    lines += _ensure_editor(settings)
    lines += _ensure_draft(settings)
    lines.append(
        f"demo: mail goes to the outbox: {settings.base_url}/outbox (Outbox in the editor; log in as above)"
    )
    return lines


def _seed_content(settings) -> list[str]:
    new_sections = _ensure_sections()
    now = clock.now()
    step = timedelta(days=7) / (len(ARTICLES) + 1)
    items = [
        {
            "external_id": f"demo-{slug}",
            "url": f"https://example.com/articles/{slug}",
            "title": title,
            "synopsis": synopsis,
            "author": author,
            "reading_minutes": minutes,
            "published_at": (now - step * (i + 1)).isoformat(),
            "tags": tags,
        }
        for i, (slug, title, synopsis, author, minutes, tags) in enumerate(ARTICLES)
    ]
    report = upsert_articles(items, "editor")
    return [
        f"demo: {len(SECTIONS)} sections ({new_sections} new): {', '.join(s for s, _, _ in SECTIONS)}",
        f"demo: {report.created + report.updated} sample articles over the last 7 days "
        f"({report.created} new, {report.updated} refreshed); assemble an issue with `newsletter issue assemble`",
    ]
