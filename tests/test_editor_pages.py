"""The workspace pages: dashboard, articles, issues (edit, preview, test,
lifecycle), subscribers and the outbox, driven through the Flask client
with CSRF on (tokens read from the pages, as a browser would)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlmodel import func, select

from newsletter import clock
from newsletter.db import session_scope
from newsletter.models import (
    Article,
    Delivery,
    Event,
    Issue,
    IssueArticle,
    OutboxMessage,
    Subscriber,
    Suppression,
    Tag,
)
from tests.editor_fixtures import XSS, add_subscriber, seed_articles, seed_issue


def text_of(response) -> str:
    return response.get_data(as_text=True)


# --- dashboard ------------------------------------------------------------------------


def test_dashboard_shows_slot_counts_chart_and_feedback(app, admin, settings):
    number = seed_issue(settings)
    for i in range(3):
        add_subscriber(f"a{i}@example.org")
    sid = add_subscriber("gone@example.org", status="bounced")
    with session_scope() as s:
        s.add(Event(kind="bounce_hard", subscriber_id=sid, detail=XSS))
        s.add(Event(kind="complaint", subscriber_id=None, detail="abuse report"))
    body = text_of(admin.get("/editor/dashboard"))
    assert "Next issue" in body and "UTC" in body
    assert f"Issue {number:03d}" in body
    assert '<svg class="chart"' in body and "<polyline" in body
    assert re.search(r'class="stat">3 <span class="stat-label">active', body)
    assert "gone@example.org" in body and "bounce hard" in body and "(erased reader)" in body
    assert "<script>alert" not in body and "&lt;script&gt;" in body


def test_growth_series_counts_joins_minus_leaves(app):
    from newsletter.editor.dashboard import growth_series

    clock.set(clock.now())
    now = clock.now()
    old = add_subscriber("old@example.org")
    add_subscriber("new@example.org")
    with session_scope() as s:
        row = s.get(Subscriber, old)
        row.created_at = now - timedelta(weeks=5)
        s.add(row)
        left = s.get(Subscriber, add_subscriber("left@example.org", status="unsubscribed"))
        left.created_at, left.unsubscribed_at = now - timedelta(weeks=6), now - timedelta(weeks=2)
        s.add(left)
    with session_scope() as s:
        series = growth_series(s, weeks=8, now=now)
    values = [v for _, v in series]
    # the leaver joins 6 weeks ago and leaves 2 weeks ago; "old" joins 5 weeks ago; "new" now
    assert values == [0, 1, 2, 2, 2, 1, 1, 2]


def test_next_slot_follows_schedule_and_timezone(make_settings):
    from datetime import UTC, datetime

    from newsletter.editor.dashboard import next_slot_time

    s = make_settings(schedule="0 8 * * mon", timezone="Europe/Berlin")
    slot = next_slot_time(s, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))  # a Wednesday
    assert slot.isoformat() == "2026-03-09T08:00:00+01:00"


# --- articles --------------------------------------------------------------------------


def test_articles_list_escapes_hostile_titles_and_filters(editor, settings):
    seed_articles(settings, extra_title=XSS)
    body = text_of(editor.get("/editor/articles"))
    assert "Agents story 0" in body and "Ethics story 1" in body
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert" in body
    only = text_of(editor.get("/editor/articles?tag=ethics"))
    assert "Ethics story 0" in only and "Agents story 0" not in only
    found = text_of(editor.get("/editor/articles?q=story+1"))
    assert "Agents story 1" in found and "Agents story 0" not in found
    assert "No articles match" in text_of(editor.get("/editor/articles?q=%25_nothing"))
    nul = editor.get("/editor/articles?q=story%00+0&tag=eth%00ics")  # NULs dropped, never a database error
    assert nul.status_code == 200 and "Ethics story 0" in text_of(nul)


def test_edit_tags_and_hold_back(editor, settings):
    seed_articles(settings)
    with session_scope() as s:
        article_id = s.exec(select(Article.id).where(Article.title == "Agents story 0")).one()
    editor.get("/editor/articles")
    r = editor.post(f"/editor/articles/{article_id}/tags", data={"tags": "ethics, New-Topic"})
    assert r.status_code == 302
    with session_scope() as s:
        new = s.exec(select(Tag).where(Tag.slug == "new-topic")).one()
        assert new.is_section is False  # a typo never becomes a section
    body = text_of(editor.get("/editor/articles?tag=ethics"))
    assert "Agents story 0" in body
    hostile = editor.post(
        f"/editor/articles/{article_id}/tags", data={"tags": "<b>bad</b>"}, follow_redirects=True
    )
    assert "is not a tag slug" in text_of(hostile) and "<b>bad</b>" not in text_of(hostile)
    editor.post(f"/editor/articles/{article_id}/hold", data={"held": "1"})
    with session_scope() as s:
        assert s.get(Article, article_id).held is True
    assert "Agents story 0" in text_of(editor.get("/editor/articles?held=yes"))
    editor.post(f"/editor/articles/{article_id}/hold", data={"held": "0"})
    with session_scope() as s:
        assert s.get(Article, article_id).held is False


# --- issues: edit ----------------------------------------------------------------------


def _rows(number):
    with session_scope() as s:
        issue = s.exec(select(Issue).where(Issue.number == number)).one()
        return [
            (a.title, ia.section)
            for ia, a in s.exec(
                select(IssueArticle, Article)
                .join(Article, Article.id == IssueArticle.article_id)
                .where(IssueArticle.issue_id == issue.id)
                .order_by(IssueArticle.position)
            )
        ], issue


def _article_id(title):
    with session_scope() as s:
        return s.exec(select(Article.id).where(Article.title == title)).one()


def test_issue_list_and_assemble_button(editor, settings):
    seed_articles(settings)
    editor.get("/editor/issues")
    r = editor.post("/editor/issues/assemble")
    assert r.status_code == 302 and "/editor/issues/" in r.headers["Location"]
    body = text_of(editor.get("/editor/issues"))
    assert "Issue 001" in body and "badge-draft" in body


def test_edit_draft_fields_reorder_remove_and_add(editor, settings):
    number = seed_issue(settings)
    rows, _ = _rows(number)
    assert len(rows) == 4
    editor.get(f"/editor/issues/{number}")
    data = {
        "title": "Issue 001: Agents & Ethics",
        "theme": "Agents",
        "subject": "Agents, ethics <and> more",
        "preheader": "Four stories",
        "intro": "Hello **readers**.",
    }
    # ethics first, and inside agents story 1 before story 0; remove Ethics story 0
    data |= {"section_rank_agents": "2", "section_rank_ethics": "1"}
    a0, a1, e0, e1 = (
        _article_id(t) for t in ("Agents story 0", "Agents story 1", "Ethics story 0", "Ethics story 1")
    )
    data |= {
        f"section_{a0}": "agents",
        f"position_{a0}": "2",
        f"section_{a1}": "agents",
        f"position_{a1}": "1",
        f"section_{e0}": "ethics",
        f"position_{e0}": "1",
        f"remove_{e0}": "1",
        f"section_{e1}": "ethics",
        f"position_{e1}": "2",
    }
    r = editor.post(f"/editor/issues/{number}", data=data)
    assert r.status_code == 302, text_of(r)
    rows, issue = _rows(number)
    assert rows == [("Ethics story 1", "ethics"), ("Agents story 1", "agents"), ("Agents story 0", "agents")]
    assert issue.subject == "Agents, ethics <and> more" and issue.intro == "Hello **readers**."
    page = text_of(editor.get(f"/editor/issues/{number}"))
    assert "Agents, ethics &lt;and&gt; more" in page and "Ethics story 0" in page  # back among candidates
    # add it again, into the agents section
    data2 = {
        k: v for k, v in data.items() if not k.startswith(("remove_", f"section_{e0}", f"position_{e0}"))
    }
    data2 |= {"add": str(e0), "add_section": "agents"}
    editor.post(f"/editor/issues/{number}", data=data2)
    rows, _ = _rows(number)
    assert ("Ethics story 0", "agents") in rows and len(rows) == 4


def test_edit_refuses_bad_input_and_loses_nothing(editor, settings):
    number = seed_issue(settings)
    before, _ = _rows(number)
    editor.get(f"/editor/issues/{number}")
    a0 = _article_id("Agents story 0")
    r = editor.post(f"/editor/issues/{number}", data={"subject": "x", f"section_{a0}": "no-such-section"})
    assert r.status_code == 400 and "unknown section" in text_of(r)
    r = editor.post(f"/editor/issues/{number}", data={"subject": "", "title": "t"})
    assert r.status_code == 400
    r = editor.post(f"/editor/issues/{number}", data={"subject": "ok", "add": "999999"})
    assert r.status_code == 400 and "does not exist" in text_of(r)
    after, issue = _rows(number)
    assert after == before and issue.subject != "ok"


# --- issues: preview and test ------------------------------------------------------------


def test_preview_page_tabs_widths_variant_and_lint(editor, settings):
    number = seed_issue(settings)
    body = text_of(editor.get(f"/editor/issues/{number}/preview"))
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in body
    assert f"/editor/issues/{number}/preview.html" in body
    assert 'data-width="mobile"' in body and 'class="frame-wrap frame-desktop"' in body
    assert "Agents story 0" in body  # the text part is in the page
    assert "Checks" in body
    mobile = text_of(editor.get(f"/editor/issues/{number}/preview?width=mobile&view=text"))
    assert 'class="frame-wrap frame-mobile"' in mobile
    assert re.search(r'data-pane="html"\s+hidden', mobile)
    ethics = text_of(editor.get(f"/editor/issues/{number}/preview?topics=ethics&topics=bogus"))
    assert "preview.html?topics=ethics" in ethics
    text_part = ethics.split('class="text-part"')[1].split("</pre>")[0]
    assert "Ethics story 0" in text_part and "Agents story 0" not in text_part


def test_preview_html_has_its_own_csp(editor, settings):
    number = seed_issue(settings)
    r = editor.get(f"/editor/issues/{number}/preview.html?topics=agents")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "sandbox" in csp
    body = text_of(r)
    assert "Agents story 0" in body and "Ethics story 0" not in body
    assert editor.get("/editor/issues/999/preview.html").status_code == 404


def test_test_send_goes_to_outbox_with_prefix_and_no_delivery_rows(editor, settings):
    number = seed_issue(settings)
    add_subscriber("reader@example.org")
    editor.get(f"/editor/issues/{number}")
    r = editor.post(
        f"/editor/issues/{number}/test",
        data={"addresses": "me@example.org, you@example.org"},
        follow_redirects=True,
    )
    assert "Test sent to me@example.org, you@example.org" in text_of(r)
    with session_scope() as s:
        sent = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [m.recipient for m in sent] == ["me@example.org", "you@example.org"]
        assert all(m.subject.startswith("[TEST]") for m in sent)
        assert s.exec(select(func.count()).select_from(Delivery)).one() == 0


@pytest.mark.parametrize(
    "addresses",
    [
        "not an address",
        "a@example.org\r\nBcc: x@evil.example",
        ",".join(f"u{i}@example.org" for i in range(11)),
    ],
)
def test_test_send_refuses_bad_addresses(editor, settings, addresses):
    number = seed_issue(settings)
    editor.get(f"/editor/issues/{number}")
    r = editor.post(f"/editor/issues/{number}/test", data={"addresses": addresses}, follow_redirects=True)
    assert "Nothing was sent" in text_of(r) or "at most 10" in text_of(r)
    with session_scope() as s:
        assert s.exec(select(func.count()).select_from(OutboxMessage)).one() == 0


# --- issues: lifecycle ---------------------------------------------------------------------


def _status(number):
    with session_scope() as s:
        return s.exec(select(Issue.status).where(Issue.number == number)).one()


def test_approve_then_send_needs_the_typed_number(editor, settings):
    number = seed_issue(settings)
    add_subscriber("reader@example.org")
    editor.get(f"/editor/issues/{number}")
    editor.post(f"/editor/issues/{number}/approve")
    assert _status(number) == "approved"
    page = text_of(editor.get(f"/editor/issues/{number}/send"))
    assert "goes to <strong>1</strong> active reader" in page
    r = editor.post(f"/editor/issues/{number}/send", data={"confirm_number": str(number + 1)})
    assert "Type 1 to confirm" in text_of(r) and _status(number) == "approved"
    r = editor.post(f"/editor/issues/{number}/send", data={"confirm_number": str(number)})
    assert r.status_code == 302 and _status(number) == "sending"
    progress = editor.get(f"/editor/issues/{number}/progress.json").get_json()
    assert progress["status"] == "sending" and progress["total"] == 1
    again = editor.post(
        f"/editor/issues/{number}/send", data={"confirm_number": str(number)}, follow_redirects=True
    )
    assert "Not sent" in text_of(again)


def test_pause_resume_and_cancel_sending(editor, settings):
    from newsletter.delivery.send import start_send
    from newsletter.issues.service import approve_issue

    number = seed_issue(settings)
    add_subscriber("reader@example.org")
    approve_issue(number, "t")
    start_send(settings, number)
    editor.get(f"/editor/issues/{number}")
    editor.post(f"/editor/issues/{number}/pause")
    assert _status(number) == "paused"
    editor.post(f"/editor/issues/{number}/resume")
    assert _status(number) == "sending"
    editor.post(f"/editor/issues/{number}/cancel")
    assert _status(number) == "cancelled"


def test_cancel_draft_and_refused_approve(editor, settings):
    number = seed_issue(settings)
    editor.get(f"/editor/issues/{number}")
    editor.post(f"/editor/issues/{number}/cancel")
    assert _status(number) == "cancelled"
    r = editor.post(f"/editor/issues/{number}/approve", follow_redirects=True)
    assert "Could not approve" in text_of(r) and _status(number) == "cancelled"


def test_schedule_for_a_time(editor, settings):
    """The sending itself is in tests/test_schedule_for_time.py (tick, SMTP, exactly once)."""
    number = seed_issue(settings)
    editor.get(f"/editor/issues/{number}")
    editor.post(f"/editor/issues/{number}/approve")
    when = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    r = editor.post(f"/editor/issues/{number}/schedule", data={"when": when}, follow_redirects=True)
    assert _status(number) == "scheduled" and "Scheduled: goes out" in text_of(r)
    assert f'action="/editor/issues/{number}/unschedule"' in text_of(r)
    past = (clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    r = editor.post(f"/editor/issues/{number}/schedule", data={"when": past}, follow_redirects=True)
    assert "not in the future" in text_of(r) and _status(number) == "scheduled"
    editor.post(f"/editor/issues/{number}/unschedule")
    assert _status(number) == "approved"


# --- subscribers (admin) ---------------------------------------------------------------------


def test_subscriber_search_and_detail(admin):
    sid = add_subscriber("ada@example.org", name="Ada <b>L</b>", topics="agents")
    add_subscriber("bob@example.org", status="pending")
    with session_scope() as s:
        s.add(Event(kind="subscribe", subscriber_id=sid, detail="form"))
    body = text_of(admin.get("/editor/subscribers?q=ADA"))
    assert "ada@example.org" in body and "bob@example.org" not in body
    assert "bob@example.org" in text_of(admin.get("/editor/subscribers?status=pending"))
    detail = text_of(admin.get(f"/editor/subscribers/{sid}"))
    assert (
        "I agree to get GET THE SIGNAL." in detail
        and "Ada &lt;b&gt;L&lt;/b&gt;" in detail
        and "subscribe" in detail
    )
    assert admin.get("/editor/subscribers/99999").status_code == 404


def test_manual_unsubscribe_and_erase(admin):
    sid = add_subscriber("erase@example.org")
    admin.get(f"/editor/subscribers/{sid}")
    admin.post(f"/editor/subscribers/{sid}/unsubscribe")
    with session_scope() as s:
        assert s.get(Subscriber, sid).status == "unsubscribed"
    admin.get(f"/editor/subscribers/{sid}/erase")
    r = admin.post(f"/editor/subscribers/{sid}/erase", data={"confirm_email": "someone@else.org"})
    assert "Type the reader" in text_of(r)
    with session_scope() as s:
        assert s.get(Subscriber, sid) is not None
    r = admin.post(f"/editor/subscribers/{sid}/erase", data={"confirm_email": "erase@example.org"})
    assert r.status_code == 302
    with session_scope() as s:
        assert s.get(Subscriber, sid) is None
        assert s.exec(select(Suppression.reason)).all() == ["erased"]


def run_form(body: str) -> dict[str, str]:
    """The preview's hidden "Import" form, as a browser would submit it."""
    form = re.search(
        r'<form method="post" action="/editor/subscribers/import/run".*?</form>', body, re.S
    ).group(0)
    return dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form))


def test_csv_import_previews_then_reports_hostile_lines_and_keeps_good_ones(admin):
    add_subscriber("known@example.org")
    csv_text = (
        "email,name,topics\n"
        "good@example.org,Good Reader,\n"
        "not-an-email,Bad,\n"
        'evil@example.org,"=HYPERLINK(""http://x"")",\n'
        'crlf@example.org,"Name\r\nBcc: victim@example.org",\n'
        "<script>alert(1)</script>@example.org,x,\n"
        "known@example.org,Known Again,\n"
    )
    admin.get("/editor/subscribers/import")
    r = admin.post(
        "/editor/subscribers/import",
        data={"file": (io.BytesIO(csv_text.encode()), "readers.csv")},
        content_type="multipart/form-data",
    )
    body = text_of(r)
    assert r.status_code == 200 and "Preview: nothing is imported yet" in body
    assert "<script>alert(1)</script>" not in body
    assert re.search(r'data-outcome="added"><th scope="row">added</th><td>2</td>', body)
    with session_scope() as s:  # the preview wrote nothing
        assert set(s.exec(select(Subscriber.email)).all()) == {"known@example.org"}
    confirm = run_form(body)
    r = admin.post("/editor/subscribers/import/run", data=confirm)
    body = text_of(r)
    assert r.status_code == 200 and "Report" in body
    with session_scope() as s:
        emails = set(s.exec(select(Subscriber.email)).all())
        good = s.exec(select(Subscriber).where(Subscriber.email == "good@example.org")).one()
    assert "good@example.org" in emails and "not-an-email" not in emails
    assert good.status == "active" and good.consent_source == "import"
    rejected = int(re.search(r'data-report="rejected">(\d+)<', body).group(1))
    assert rejected >= 2
    assert re.search(r"<td>3</td>", body)  # the line number of not-an-email
    # the upload is gone once imported: the same form cannot run twice
    again = admin.post("/editor/subscribers/import/run", data=confirm)
    assert again.status_code == 302 and "gone" in text_of(admin.get("/editor/subscribers/import"))


def test_import_preview_shows_other_services_statuses_and_encodings(admin, settings):
    mailchimp = (
        "Email Address;First Name;Last Name;MEMBER_RATING;OPTIN_TIME;CONFIRM_TIME;UNSUB_TIME;CLEAN_TIME;TAGS\r\n"
        "zoe@example.org;Zoë;Müller;2;2020-01-01 10:00:00;2020-01-01 10:05:00;;;\r\n"
        "gone@example.org;Gone;Away;1;2020-01-01 10:00:00;;2023-06-06 12:56:15;;\r\n"
        "dead@example.org;Dead;Box;1;2020-01-01 10:00:00;;;2022-02-02 02:02:02;\r\n"
    ).encode("cp1252")
    r = admin.post(
        "/editor/subscribers/import",
        data={"file": (io.BytesIO(mailchimp), "audience.csv")},
        content_type="multipart/form-data",
    )
    body = text_of(r)
    assert "Mailchimp export" in body and "Windows-1252 (detected)" in body and "semicolon" in body
    assert "Zoë" in body and "Müller" in body  # the first rows, as read
    for outcome, count in (("added", 1), ("unsubscribed", 1), ("bounced", 1)):
        assert re.search(rf'data-outcome="{outcome}"><th scope="row">[^<]+</th><td>{count}</td>', body), (
            outcome
        )
    admin.post("/editor/subscribers/import/run", data=run_form(body))
    with session_scope() as s:
        statuses = dict(s.exec(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {
        "zoe@example.org": "active",
        "gone@example.org": "unsubscribed",
        "dead@example.org": "bounced",
    }


def test_import_run_refuses_a_forged_or_unknown_upload(admin):
    admin.get("/editor/subscribers/import")
    for upload in ("../../etc/passwd", "x" * 32, ""):
        r = admin.post(
            "/editor/subscribers/import/run", data={"upload": upload, "source": "", "encoding": ""}
        )
        assert r.status_code == 302 and r.headers["Location"].endswith("/editor/subscribers/import")
    r = admin.post(
        "/editor/subscribers/import/run", data={"upload": "y" * 32, "source": "evil", "encoding": "rot13"}
    )
    assert r.status_code == 302


def test_csv_import_without_header_is_refused(admin):
    admin.get("/editor/subscribers/import")
    r = admin.post(
        "/editor/subscribers/import",
        data={"file": (io.BytesIO(b"nobody,here\n"), "x.csv")},
        content_type="multipart/form-data",
    )
    assert "was not imported" in text_of(r)
    r = admin.post("/editor/subscribers/import", data={}, content_type="multipart/form-data")
    assert "This field is required" in text_of(r)


def test_csv_export_streams_every_reader(admin):
    for i in range(3):
        add_subscriber(f"r{i}@example.org")
    r = admin.get("/editor/subscribers/export.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    lines = text_of(r).strip().splitlines()
    assert lines[0].startswith("email") and "status" in lines[0] and len(lines) == 4


# --- outbox ----------------------------------------------------------------------------------


def _store_mail(subject="Hello <there>", html='<p style="color:red">Hi</p>', text="Hi in text"):
    from newsletter.delivery.message import OutgoingMessage
    from newsletter.delivery.transports.outbox import OutboxTransport

    message = OutgoingMessage(
        sender="GET THE SIGNAL <signal@example.org>",
        to="reader@example.org",
        subject=subject,
        text=text,
        html=html,
    )
    OutboxTransport().send([message])


def test_outbox_lists_and_opens_a_message(admin):
    _store_mail()
    body = text_of(admin.get("/editor/outbox"))
    assert "Hello &lt;there&gt;" in body and "reader@example.org" in body
    with session_scope() as s:
        mid = s.exec(select(OutboxMessage.id)).one()
    page = text_of(admin.get(f"/editor/outbox/{mid}"))
    assert "Hi in text" in page and "Message-ID" in page and f"/editor/outbox/{mid}/body.html" in page
    html = admin.get(f"/editor/outbox/{mid}/body.html")
    assert "color:red" in text_of(html)
    assert "style-src 'unsafe-inline'" in html.headers["Content-Security-Policy"]
    assert "script" not in html.headers["Content-Security-Policy"]
    assert admin.get("/editor/outbox/424242").status_code == 404
