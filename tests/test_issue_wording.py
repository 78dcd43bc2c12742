"""The words about an issue are each reader's own: intro counts, topics and the
inbox line are filled per variant (rendering.wording), at freeze and after a reorder."""

from __future__ import annotations

from sqlmodel import select

from newsletter.db import session_scope
from newsletter.issues.service import set_issue_articles, update_issue
from newsletter.models import Issue, IssueArticle, IssueRender
from newsletter.rendering import wording
from newsletter.rendering.issue import freeze_issue
from newsletter.rendering.view import build_view
from tests.editor_fixtures import add_subscriber, seed_issue


def _issue(session, number):
    return session.exec(select(Issue).where(Issue.number == number)).one()


def titles(view):
    return [a.title for s in view.sections for a in s.articles]


def test_placeholders_fill_and_leave_other_braces():
    filled = wording.values(["Agents", "Data", "Tools"], ["One", "Two", "Three", "Four"])
    assert wording.fill("{count} {stories} on {topics}; {unknown} {inside}", filled) == (
        "4 stories on Agents, Data and Tools; {unknown} Inside: One; Two and 2 more"
    )
    assert (
        wording.fill(wording.DEFAULT_INTRO, wording.values(["Data"], ["Only"]))
        == "1 story this week, on Data."
    )
    long = wording.inside_line(["x" * 200, "y"])
    assert len(long) == wording.PREHEADER_MAX and long.endswith("…")


def test_a_reader_of_one_section_is_told_only_about_their_stories(app, settings):
    number = seed_issue(settings, count_per_section=3)
    with session_scope() as session:
        issue = _issue(session, number)
        everything = build_view(session, issue, settings, "")
        agents = build_view(session, issue, settings, "agents")
    assert "6 stories this week, on Agents and Ethics." in everything.intro_text
    assert everything.preheader == "Inside: {}; {} and 4 more".format(*titles(everything)[:2])
    assert "3 stories this week, on Agents." in agents.intro_text
    assert agents.preheader == "Inside: {}; {} and 1 more".format(*titles(agents)[:2])
    assert "Ethics" not in agents.preheader + agents.intro_text


def test_the_frozen_variants_carry_their_own_counts_and_inbox_line(app, settings):
    number = seed_issue(settings, count_per_section=2)
    add_subscriber("a@example.org", topics="ethics")
    add_subscriber("b@example.org", topics="")
    with session_scope() as session:
        renders = freeze_issue(session, _issue(session, number), settings)
    assert set(renders) == {"", "ethics"}
    assert "2 stories this week, on Ethics." in renders["ethics"].text
    assert "Inside: Ethics story " in renders["ethics"].html  # the hidden preheader
    assert "Agents story" not in renders["ethics"].html
    assert "4 stories this week, on Agents and Ethics." in renders[""].text


def test_reordering_refreshes_the_inbox_line(app, settings):
    number = seed_issue(settings, count_per_section=2)
    with session_scope() as session:
        links = session.exec(
            select(IssueArticle)
            .join(Issue, Issue.id == IssueArticle.issue_id)
            .where(Issue.number == number)
            .order_by(IssueArticle.position)
        ).all()
        items = [(link.article_id, link.section) for link in links]
    set_issue_articles(number, list(reversed(items)))
    with session_scope() as session:
        view = build_view(session, _issue(session, number), settings, "")
    first = [session_title for session_title in titles(view)][:2]
    assert first[0].startswith("Ethics") and view.preheader == "Inside: {}; {} and 2 more".format(*first)
    assert [s.slug for s in view.sections] == ["ethics", "agents"]
    assert "on Ethics and Agents." in view.intro_text


def test_an_editors_own_words_keep_the_placeholders(app, settings):
    number = seed_issue(settings, count_per_section=2)
    update_issue(
        number, intro="Hello! **{count}** picks for you ({topics}).", preheader="Your {count}: {inside}"
    )
    with session_scope() as session:
        issue = _issue(session, number)
        ethics = build_view(session, issue, settings, "ethics")
        assert session.exec(select(IssueRender)).first() is None  # nothing stored by a view
    assert "Hello! <strong>2</strong> picks for you (Ethics)." in ethics.intro_html
    assert ethics.preheader == "Your 2: Inside: {}; {}".format(*titles(ethics))


def test_hostile_section_names_and_titles_stay_text(app, settings):
    number = seed_issue(
        settings, count_per_section=1, extra_title="<img src=x onerror=alert(1)> [x](javascript:y)"
    )
    update_issue(number, intro="{inside}")
    with session_scope() as session:
        view = build_view(session, _issue(session, number), settings, "agents")
    assert "<img" not in view.intro_html and "href" not in view.intro_html  # text, never markup or a link
    assert "[x](javascript:y)" in view.intro_html


def test_preview_page_lists_every_variants_inbox_line(editor, settings):
    number = seed_issue(settings, count_per_section=2)
    add_subscriber("a@example.org", topics="agents")
    body = editor.get(f"/editor/issues/{number}/preview?topics=ethics").get_data(as_text=True)
    lines = body.split('class="card inbox-lines"')[1].split("</section>")[0]
    items = lines.split("<li")[1:]
    assert len(items) == 3  # everyone, the agents reader's variant, and the one shown
    assert "Readers of every section" in items[0] and "and 2 more" in items[0]
    assert "Readers of Agents" in items[1] and items[1].count("Agents story") == 2 and "more" not in items[1]
    assert (
        "Readers of Ethics" in items[2] and 'class="current"' in items[2] and "Agents story" not in items[2]
    )
    subject_line = body.split('class="subject-line"')[1].split("</p>")[0]
    assert subject_line.count("Ethics story") == 2 and "Agents story" not in subject_line
