"""Helpers for the delivery tests: a real issue (tags, articles, sections —
rendered by the real MJML renderer when frozen), subscribers inserted in
bulk, straight into the database, and the transactional mail sender."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from newsletter import clock
from newsletter.db import init_engine, session_scope
from newsletter.delivery.mailqueue import MailSender
from newsletter.models import (
    Article,
    ArticleTag,
    Delivery,
    Issue,
    IssueArticle,
    Subscriber,
    Tag,
    TransactionalMail,
)
from newsletter.suppression import email_hash


@pytest.fixture
def mail_sender():
    """``start(settings)`` runs the transactional mail sender in a thread, as
    ``serve`` does (a second call replaces the first: new settings); stopped
    when the test ends. Tests that read mail right after an action call
    ``wait_for_queue()`` first. Name it after ``smtp_server`` in a test's
    arguments: fixtures stop in reverse order, so the sender then stops
    before the server it may be talking to (the other way round, a send in
    flight waits for its read timeout)."""
    running: list[MailSender] = []

    def start(settings) -> MailSender:
        while running:
            running.pop().shutdown()
        init_engine(settings.database_url)
        sender = MailSender(settings, poll=0.05).start()
        running.append(sender)
        return sender

    yield start
    while running:
        running.pop().shutdown()


def waiting_mail() -> int:
    """Transactional mails queued and due, or being sent."""
    t = TransactionalMail.__table__.c
    with session_scope() as session:
        return session.execute(
            select(func.count()).where(
                (t.status == "sending") | ((t.status == "pending") & (t.next_attempt_at <= clock.now()))
            )
        ).scalar()


def queued_mail() -> list[TransactionalMail]:
    """Every transactional mail row, oldest first."""
    with session_scope() as session:
        return list(session.scalars(select(TransactionalMail).order_by(TransactionalMail.id)))


def wait_for_queue(timeout: float = 10.0) -> None:
    """Until the sender has taken every due transactional mail out of the queue."""
    deadline = time.monotonic() + timeout
    while waiting_mail():
        if time.monotonic() > deadline:
            raise AssertionError(f"{waiting_mail()} transactional mails still waiting after {timeout} s")
        time.sleep(0.02)


def make_issue(settings, number: int = 1, status: str = "approved", *, subject: str = "") -> int:
    """An issue with two sections ("agents", "safety"), two articles each."""
    init_engine(settings.database_url)
    now = clock.now()
    with session_scope() as session:
        tags = {}
        for position, (slug, name) in enumerate((("agents", "Agents"), ("safety", "Safety"))):
            tag = session.scalars(select(Tag).where(Tag.slug == slug)).first()
            if tag is None:
                tag = Tag(slug=slug, name=name, position=position)
                session.add(tag)
                session.flush()
            tags[slug] = tag
        issue = Issue(
            number=number,
            theme="AI Ethics and Data 2026",
            title=f"Issue {number:03d}: AI Ethics and Data 2026",
            subject=subject or f"Issue {number:03d}: AI Ethics and Data 2026",
            preheader="Four reads for the week",
            intro="A **short** intro.",
            status=status,
            window_start=now - timedelta(days=7),
            window_end=now,
        )
        session.add(issue)
        session.flush()
        position = 0
        for slug, tag in tags.items():
            for n in range(2):
                article = Article(
                    external_id=f"{number}-{slug}-{n}",
                    url=f"https://example.org/{slug}/{number}/{n}",
                    title=f"{tag.name} story {n}",
                    synopsis=f"What happened in {slug} ({n}).",
                    author="Ada",
                    reading_minutes=4,
                )
                session.add(article)
                session.flush()
                session.add(ArticleTag(article_id=article.id, tag_id=tag.id))
                session.add(
                    IssueArticle(issue_id=issue.id, article_id=article.id, section=slug, position=position)
                )
                position += 1
        return issue.id


def add_subscribers(
    settings,
    count: int,
    *,
    prefix: str = "reader",
    status: str = "active",
    topics: str = "",
    domain: str = "example.org",
) -> list[int]:
    init_engine(settings.database_url)
    now = clock.now()
    rows = [
        {
            "email": f"{prefix}{n}@{domain}",
            "email_hash": email_hash(f"{prefix}{n}@{domain}"),
            "name": f"Reader {n}",
            "status": status,
            "topics": topics,
            "created_at": now,
            "updated_at": now,
            "consent_source": "import",
            "consent_text": "test",
            "confirm_sent_count": 0,
        }
        for n in range(count)
    ]
    with session_scope() as session:
        session.execute(insert(Subscriber.__table__), rows)
        ids = session.scalars(
            select(Subscriber.id).where(Subscriber.email.like(f"{prefix}%@{domain}")).order_by(Subscriber.id)
        ).all()
    return list(ids)


def deliveries(settings, issue_id: int | None = None) -> list[Delivery]:
    init_engine(settings.database_url)
    with session_scope() as session:
        query = select(Delivery).order_by(Delivery.id)
        if issue_id is not None:
            query = query.where(Delivery.issue_id == issue_id)
        return list(session.scalars(query).all())


def issue_row(settings, number: int) -> Issue:
    with session_scope() as session:
        return session.scalars(select(Issue).where(Issue.number == number)).one()


def subscriber(settings, email: str) -> Subscriber:
    with session_scope() as session:
        return session.scalars(select(Subscriber).where(Subscriber.email == email)).one()


def command_env(settings, **overrides: str) -> dict:
    """The environment of a real ``newsletter`` process working on ``settings``'
    database: this process's variables without any NEWSLETTER_*, then the
    settings a sender needs, then ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_ENV="testing",
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_BASE_URL=settings.base_url,
        NEWSLETTER_MAIL_FROM=settings.mail_from,
        NEWSLETTER_TRANSPORT=settings.transport,
        NEWSLETTER_INSTANCE_PATH=str(settings.instance_path),
    )
    env.update(overrides)
    return env


def run_python(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    """A fresh interpreter (``python ARGS``) in ``env``, its output captured as text."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
