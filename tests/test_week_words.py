"""Editors' words and numbers (issue 19, item 7): the schedule in words, a
"Next issue" that is next, messages in sentences, titles of their own,
counts of articles that can really be added, settings that say what they do."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import timedelta

from newsletter import clock
from newsletter.config import Settings
from newsletter.content.service import upsert_articles
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver
from newsletter.editor import issue_edit
from newsletter.issues.service import approve_issue, assemble_issue, get_issue, update_issue
from newsletter.scheduling.slots import in_words
from newsletter.settings_help import MEANING
from tests.editor_fixtures import ADMIN, EDITOR, Browser, add_subscriber, login, seed_issue


def test_the_schedule_in_words():
    assert in_words("0 8 * * mon", "UTC") == "Mondays at 08:00 (UTC)"
    assert in_words("30 7 * * 1-5", "Europe/Berlin") == "Weekdays at 07:30 (Europe/Berlin)"
    assert in_words("0 8 * * mon,thu", "UTC") == "Mondays and Thursdays at 08:00 (UTC)"
    assert in_words("0 8 * * 0", "UTC") == "Sundays at 08:00 (UTC)"
    assert in_words("0 9 * * *", "UTC") == "Every day at 09:00 (UTC)"
    assert in_words("0 6 1 * *", "UTC") == "Day 1 of each month at 06:00 (UTC)"
    # what it cannot say plainly, it shows as it is (never wrong words)
    assert in_words("*/5 * * * *", "UTC") == "cron */5 * * * * (UTC)"
    assert in_words("0 8 1-7 * mon", "UTC") == "cron 0 8 1-7 * mon (UTC)"
    assert in_words("0 8 * * funday", "UTC") == "cron 0 8 * * funday (UTC)"


def test_every_setting_says_what_it_does(admin):
    missing = [f.name for f in fields(Settings) if not MEANING.get(f.name)]
    assert not missing, f"add these to newsletter/settings_help.py: {missing}"
    body = admin.get("/editor/settings").get_data(as_text=True)
    assert "To change one" in body and "EnvironmentFile=" in body and "restart" in body
    assert "How many days a confirmation link works" in body


def logged_in(old: Browser) -> Browser:
    client = old.client.application.test_client()
    assert login(client, *EDITOR).status_code == 302
    return Browser(client)


def _send(settings, number):
    approve_issue(number, ADMIN[0])
    deliver(settings, number, here=True)


def test_after_a_send_next_issue_is_not_the_one_just_sent(admin, settings):
    add_subscriber("a@example.org")
    number = seed_issue(settings)
    _send(settings, number)
    body = admin.get("/editor/dashboard").get_data(as_text=True)
    card = body.split('class="card next-slot"')[1].split("</section>")[0]
    assert "Mondays at 08:00 (UTC)" in card and "0 8 * * mon" not in card
    assert "No issue for this slot yet" in card and "Edit draft" not in card
    assert "Last sent:" in card


def test_action_messages_are_sentences(editor, settings):
    number = seed_issue(settings)
    body = editor.post(f"/editor/issues/{number}/approve", follow_redirects=True).get_data(as_text=True)
    assert "Issue 001 is approved: it goes out at its slot" in body and "done." not in body


def test_a_new_issue_gets_a_theme_of_its_own_and_a_twin_is_named(editor, settings):
    add_subscriber("a@example.org")
    first = seed_issue(settings)
    _send(settings, first)
    clock.advance(timedelta(days=7))
    when = (clock.now() - timedelta(hours=1)).isoformat()
    items = [{"url": f"https://example.org/n/{i}", "title": f"New {i}", "published_at": when,
              "tags": ["agents" if i % 2 else "ethics"]} for i in range(4)]  # fmt: skip
    assert not upsert_articles(items, "api").errors
    second = assemble_issue(settings).issue
    with session_scope() as session:
        before = get_issue(session, first)
    assert second.theme != before.theme and second.title != before.title
    assert "Agents" in second.theme and "Ethics" in second.theme  # still says what is in it
    # an editor who gives it the first one's title is told
    editor = logged_in(editor)  # a week passed: the session ended
    page = editor.get(f"/editor/issues/{second.number}").get_data(as_text=True)
    assert "has the same" not in page
    update_issue(second.number, title=before.title)
    page = editor.get(f"/editor/issues/{second.number}").get_data(as_text=True)
    assert "Issue 001</a> has the same title" in page


def test_add_articles_counts_only_articles_that_can_be_added(editor, settings):
    add_subscriber("a@example.org")
    first = seed_issue(settings)  # 4 articles, sent
    _send(settings, first)
    clock.advance(timedelta(days=7))
    when = (clock.now() - timedelta(hours=1)).isoformat()
    new = [{"url": f"https://example.org/n/{i}", "title": f"New {i}", "published_at": when, "tags": ["agents"]}
           for i in (1, 2)]  # fmt: skip
    assert not upsert_articles(new[:1], "api").errors
    second = assemble_issue(settings).issue.number
    assert not upsert_articles(new[1:], "api").errors  # arrives after the assembly
    with session_scope() as session:
        offered = issue_edit.candidates(session, get_issue(session, second))
    assert [a.title for a in offered] == ["New 2"]  # not the sent ones, not the one already in
    editor = logged_in(editor)
    page = editor.get(f"/editor/issues/{second}").get_data(as_text=True)
    assert "Add articles (1 available)" in page


def test_a_failed_save_keeps_the_articles_as_the_editor_left_them(editor, settings):
    number = seed_issue(settings)
    page = editor.get(f"/editor/issues/{number}").get_data(as_text=True)
    ids = re.findall(r'name="position_(\d+)"', page)
    first, second = ids[0], ids[1]
    data = {"title": "x" * 400, "theme": "T", "subject": "S", "preheader": "", "intro": "",
            f"position_{first}": "2", f"position_{second}": "1", f"remove_{ids[-1]}": "1",
            f"section_{first}": "ethics"}  # fmt: skip
    r = editor.post(f"/editor/issues/{number}", data=data)
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and "x" * 400 in body  # the typed title is kept…
    assert re.search(rf'name="position_{first}" value="2"', body)  # …and the order, removal, section
    assert re.search(rf'name="remove_{ids[-1]}" value="1" aria-label="[^"]*" checked', body)
    select = body.split(f'name="section_{first}"')[1].split("</select>")[0]
    assert re.search(r'value="ethics"\s+selected', select)
