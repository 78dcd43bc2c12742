"""Assembly with a controlled clock: windows, limits, numbering, empty weeks, idempotency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.issues import service
from newsletter.issues.service import IssueError, assemble_issue
from newsletter.models import Article, Issue, IssueArticle
from newsletter.rendering.view import build_view
from tests.content_fixtures import T0, add_articles, article, mark_sent


def _articles_of(number: int) -> list[tuple[str, str]]:
    """[(article title, section)] of an issue in reading order."""
    with session_scope() as session:
        issue = service.get_issue(session, number)
        return [(a.title, link.section) for link, a in service.issue_articles(session, issue)]


def test_first_issue_takes_the_last_seven_days(content_settings):
    settings = content_settings.default
    add_articles(
        settings,
        [
            article(1, "ai-agents", at=T0 - timedelta(days=1)),
            article(2, "data", at=T0 - timedelta(days=6, hours=23)),
            article(3, "data", at=T0 - timedelta(days=7, hours=1)),  # before the window
            article(4, "research", at=T0 + timedelta(hours=1)),  # in the future
            article(5, [], at=T0 - timedelta(hours=2)),  # no section tag
        ],
    )
    result = assemble_issue(settings)
    assert result.created and result.issue is not None
    assert result.issue.window_start == T0 - timedelta(days=7)
    assert result.issue.window_end == T0
    assert sorted(t for t, _ in _articles_of(result.issue.number)) == ["Article 1", "Article 2"]


def test_numbering_continues_at_first_issue_and_is_zero_padded(content_settings):
    settings = content_settings(first_issue=45)
    add_articles(settings, [article(1, "ai-ethics"), article(2, "data")])
    first = assemble_issue(settings).issue
    assert first.number == 45 and first.label == "Issue 045"
    assert first.title.startswith("Issue 045: ")
    mark_sent(45)
    clock.advance(timedelta(days=7))
    add_articles(settings, [article(3, "data")])
    second = assemble_issue(settings).issue
    assert second.number == 46 and second.title.startswith("Issue 046: ")


def test_next_window_starts_where_the_previous_ended(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data", at=T0 - timedelta(hours=1))])
    first = assemble_issue(settings).issue
    mark_sent(first.number)
    # Published exactly at the previous window end belongs to the previous window.
    add_articles(settings, [article(2, "data", at=T0), article(3, "data", at=T0 + timedelta(days=3))])
    clock.advance(timedelta(days=7))
    second = assemble_issue(settings).issue
    assert second.window_start == T0 and second.window_end == T0 + timedelta(days=7)
    assert _articles_of(second.number) == [("Article 3", "data")]


def test_an_article_is_never_in_two_issues_but_returns_after_a_cancel(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    first = assemble_issue(settings).issue
    # Backdate the window so the same article would be eligible again.
    service.cancel_issue(first.number)
    again = assemble_issue(settings).issue
    assert again.number == first.number + 1  # numbers are never reused
    assert _articles_of(again.number) == [("Article 1", "data")]
    mark_sent(again.number)
    clock.advance(timedelta(days=7))
    with session_scope() as session:  # move the article into the new window
        a = session.exec(select(Article)).one()
        a.published_at = clock.now() - timedelta(days=1)
        session.add(a)
    result = assemble_issue(settings)
    assert result.issue is None and "No new articles" in result.message


def test_empty_week_makes_no_issue_and_says_so(content_settings):
    settings = content_settings.default
    result = assemble_issue(settings)
    assert result.issue is None and not result.created
    assert "no issue assembled" in result.message
    with session_scope() as session:
        assert session.exec(select(Issue)).all() == []


def test_held_articles_wait(content_settings):
    settings = content_settings.default
    ids = add_articles(settings, [article(1, "data"), article(2, "data")])
    with session_scope() as session:
        held = session.get(Article, ids[0])
        held.held = True
        session.add(held)
    issue = assemble_issue(settings).issue
    assert _articles_of(issue.number) == [("Article 2", "data")]


def test_section_and_issue_limits_round_robin(content_settings):
    settings = content_settings(section_limit=3, issue_limit=5)
    items = [article(n, "ai-agents") for n in range(1, 7)]  # newest first: 1..6
    items += [article(n, "data") for n in range(10, 12)]
    items += [article(20, "research")]
    add_articles(settings, items)
    issue = assemble_issue(settings).issue
    got = _articles_of(issue.number)
    assert len(got) == 5
    sections = [s for _, s in got]
    assert sections.count("ai-agents") <= 3
    assert {"ai-agents", "data", "research"} == set(
        sections
    )  # the busy section does not crowd out the others
    assert [t for t, s in got if s == "ai-agents"] == ["Article 1", "Article 2"]  # newest first
    assert sections == sorted(sections, key=["ai-agents", "ai-ethics", "data", "research"].index)


def test_multi_tagged_article_goes_to_its_first_section_with_room(content_settings):
    settings = content_settings(section_limit=1)
    add_articles(settings, [article(1, ["data", "ai-agents"]), article(2, ["ai-agents", "data"])])
    got = dict(_articles_of(assemble_issue(settings).issue.number))
    assert got == {"Article 1": "ai-agents", "Article 2": "data"}


def test_configured_sections_order_and_filter(content_settings):
    settings = content_settings(sections=("research", "data"))
    add_articles(settings, [article(1, "data"), article(2, "research"), article(3, "ai-agents")])
    got = _articles_of(assemble_issue(settings).issue.number)
    assert got == [("Article 2", "research"), ("Article 1", "data")]


def test_theme_derived_from_top_sections_and_year(content_settings):
    settings = content_settings.default
    add_articles(
        settings,
        [
            article(1, "ai-ethics"),
            article(2, "ai-ethics"),
            article(3, "data"),
            article(4, "data"),
            article(5, "research"),
        ],
    )
    issue = assemble_issue(settings).issue
    assert issue.theme == "AI Ethics and Data 2026"
    assert issue.title == "Issue 001: AI Ethics and Data 2026"
    assert issue.subject == issue.title
    assert issue.preheader == "{inside}"  # filled per variant when rendered (tests/test_issue_wording.py)
    with session_scope() as session:
        view = build_view(session, session.get(Issue, issue.id), settings)
    assert view.preheader.startswith("Inside: ") and "and 3 more" in view.preheader


def test_assembling_twice_without_a_slot_returns_the_open_draft(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    first = assemble_issue(settings)
    add_articles(settings, [article(2, "data")])
    second = assemble_issue(settings)
    assert first.created and not second.created
    assert second.issue.id == first.issue.id and "already an open draft" in second.message
    with session_scope() as session:
        assert len(session.exec(select(Issue)).all()) == 1


def test_assembling_twice_for_the_same_slot_makes_one_draft(content_settings):
    settings = content_settings.default
    slot = T0 + timedelta(days=1)
    add_articles(settings, [article(1, "data")])
    first = assemble_issue(settings, slot_at=slot)
    service.approve_issue(first.issue.number, "ed@example.org")
    second = assemble_issue(settings, slot_at=slot)
    assert second.issue.id == first.issue.id and not second.created
    with session_scope() as session:
        assert len(session.exec(select(Issue)).all()) == 1


def test_a_slot_adopts_an_open_manual_draft(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    manual = assemble_issue(settings).issue
    slot = T0 + timedelta(days=1)
    result = assemble_issue(settings, slot_at=slot)
    assert result.issue.id == manual.id and result.issue.slot_at == slot


def test_edit_theme_retitles_and_withdraws_approval(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    issue = assemble_issue(settings).issue
    service.approve_issue(issue.number, "ed@example.org")
    edited = service.update_issue(issue.number, theme="Signals from the data desk", intro="Hello **all**")
    assert edited.title == "Issue 001: Signals from the data desk" and edited.subject == edited.title
    assert edited.status == "draft" and edited.approved_at is None
    with pytest.raises(IssueError):
        service.update_issue(issue.number, theme="x" * 201)
    with pytest.raises(IssueError):
        service.update_issue(issue.number, status="sent")


def test_set_articles_validates_and_reorders(content_settings):
    settings = content_settings.default
    ids = add_articles(settings, [article(1, "data"), article(2, "research")])
    issue = assemble_issue(settings).issue
    service.set_issue_articles(issue.number, [(ids[1], "research"), (ids[0], "ai-agents")])
    assert _articles_of(issue.number) == [("Article 2", "research"), ("Article 1", "ai-agents")]
    for bad in ([(ids[0], "nope")], [(999, "data")], [(ids[0], "data"), (ids[0], "data")]):
        with pytest.raises(IssueError):
            service.set_issue_articles(issue.number, bad)
    assert len(_articles_of(issue.number)) == 2  # a refused edit changes nothing


def test_cancel_only_before_sending(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    issue = assemble_issue(settings).issue
    mark_sent(issue.number)
    with pytest.raises(IssueError):
        service.cancel_issue(issue.number)
    with pytest.raises(service.IssueNotFound):
        service.approve_issue(999, "x")


def test_issue_articles_table_has_positions(content_settings):
    settings = content_settings.default
    add_articles(settings, [article(n, "data") for n in range(1, 4)])
    issue = assemble_issue(settings).issue
    with session_scope() as session:
        positions = session.exec(
            select(IssueArticle.position)
            .where(IssueArticle.issue_id == issue.id)
            .order_by(IssueArticle.position)
        ).all()
    assert positions == [0, 1, 2]


def test_cli_assemble(content_settings, make_app):
    settings = content_settings.default
    add_articles(settings, [article(1, "data")])
    app = make_app()
    runner = app.test_cli_runner()
    out = runner.invoke(args=["issue", "assemble"])
    assert out.exit_code == 0 and "Issue 001" in out.output
    out = runner.invoke(args=["issue", "assemble"])
    assert "already an open draft" in out.output
