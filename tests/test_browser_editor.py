"""The editor's flows in headless Chromium (Playwright), against a live
server: login, edit, preview at both widths, a test received by a real SMTP
server, approve and send with live progress, CSV import. Screenshots land
in screenshots/editor-*.png."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import Article, Issue, IssueArticle, Subscriber
from tests.editor_fixtures import EDITOR, XSS, add_subscriber, log_in, seed_issue, start

pytestmark = pytest.mark.browser


def no_console_errors(page) -> list[str]:
    """Script errors and CSP refusals (expected 401/403/404 loads are not errors)."""
    errors: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_login_wrong_then_right(page, live_server_factory, make_app, screenshot):
    server, _ = start(live_server_factory, make_app)
    errors = no_console_errors(page)
    page.goto(f"{server.url}/editor/issues")
    assert page.url.startswith(f"{server.url}/editor/login")  # anonymous: sent to the login page
    page.fill("#email", EDITOR[0])
    page.fill("#password", "not the password")
    page.click("button:has-text('Log in')")
    assert page.locator(".flash-error").inner_text() == "Wrong email address or password."
    screenshot(page, "editor-login-error")
    page.fill("#email", EDITOR[0])
    page.fill("#password", EDITOR[1])
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r".*/editor/issues$"))
    assert "editor@example.org" in page.locator(".logout").inner_text()
    page.goto(f"{server.url}/editor/subscribers")
    assert "admins only" in page.content()  # an editor is refused admin pages
    page.goto(f"{server.url}/editor/dashboard")
    page.click("button:has-text('Log out')")
    page.wait_for_url(re.compile(r".*/editor/login$"))
    assert errors == []


def test_dashboard_and_articles(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    seed_issue(settings, extra_title=XSS)
    for i in range(4):
        add_subscriber(f"r{i}@example.org")
    add_subscriber("p@example.org", status="pending")
    errors = no_console_errors(page)
    log_in(page, server)
    assert page.locator("svg.chart polyline").count() == 1
    assert "Issue 001" in page.locator(".next-slot").inner_text()
    screenshot(page, "editor-dashboard")
    page.click("nav.editor-nav >> text=Articles")
    page.wait_for_url("**/editor/articles")
    # the hostile title is shown as text, and no script ran (no dialog, no console error)
    assert page.locator(".article-title", has_text='<script>alert("x")</script>').count() == 1
    page.select_option("select[name=tag]", "ethics")
    page.click("button:has-text('Filter')")
    assert page.locator(".article-title").count() == 2
    row = page.locator("tr", has_text="Ethics story 0")
    row.locator("button:has-text('Hold back')").click()
    assert "held back from the next issue" in page.locator(".flash-success").inner_text()
    screenshot(page, "editor-articles")
    assert errors == []


def test_edit_a_draft(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    number = seed_issue(settings)
    errors = no_console_errors(page)
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}")
    page.fill("#subject", "Agents are shipping")
    page.fill("#intro", "This week: **agents** at work.")
    assert page.locator("label[for=subject] .counter").inner_text() == "19 / 78"
    # move "Agents story 1" above "Agents story 0", and remove an ethics story
    page.click("button[aria-label='Move Agents story 1 up']")
    first = page.locator("table.article-table tbody tr").first
    assert "Agents story 1" in first.inner_text() and first.locator("input.position").input_value() == "1"
    page.check("input[aria-label='Remove Ethics story 1']")
    screenshot(page, "editor-issue-edit")
    page.click("button:has-text('Save draft')")
    assert "Draft saved." in page.locator(".flash-success").inner_text()
    with session_scope() as s:
        issue = s.exec(select(Issue).where(Issue.number == number)).one()
        titles = [
            a.title
            for _, a in s.exec(
                select(IssueArticle, Article)
                .join(Article, Article.id == IssueArticle.article_id)
                .where(IssueArticle.issue_id == issue.id)
                .order_by(IssueArticle.position)
            )
        ]
    assert issue.subject == "Agents are shipping" and issue.intro == "This week: **agents** at work."
    assert titles == ["Agents story 1", "Agents story 0", "Ethics story 0"]
    assert errors == []


def test_preview_desktop_mobile_text_and_variant(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    number = seed_issue(settings)
    errors = no_console_errors(page)
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}/preview")
    frame = page.frame_locator("#preview-frame")
    frame.locator("text=Agents story 0 >> visible=true").first.wait_for()
    assert (
        page.locator("#preview-frame").get_attribute("sandbox")
        == "allow-same-origin allow-popups allow-popups-to-escape-sandbox"
    )
    desktop = page.locator("#preview-frame").bounding_box()["width"]
    assert desktop > 600
    screenshot(page, "editor-preview-desktop")
    page.click("a[data-width=mobile]")
    page.wait_for_function("document.getElementById('preview-frame').getBoundingClientRect().width < 400")
    assert page.locator("#preview-frame").bounding_box()["width"] == 375
    assert "width=mobile" in page.url
    screenshot(page, "editor-preview-mobile")
    page.click("a[data-tab=text]")
    assert page.locator("pre.text-part").is_visible() and not page.locator("#preview-frame").is_visible()
    assert "Agents story 0" in page.locator("pre.text-part").inner_text()
    screenshot(page, "editor-preview-text")
    # as a reader of ethics only
    page.check("input[name=topics][value=ethics]")
    page.click("button:has-text('Show this variant')")
    page.click("a[data-tab=html]")
    frame = page.frame_locator("#preview-frame")
    frame.locator("text=Ethics story 0 >> visible=true").first.wait_for()
    assert frame.locator("text=Agents story 0 >> visible=true").count() == 0
    assert errors == []


def test_test_send_reaches_a_real_smtp_server(page, live_server_factory, make_app, smtp_server, screenshot):
    server, settings = start(live_server_factory, make_app, transport=smtp_server.dsn)
    number = seed_issue(settings)
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}/preview")
    page.fill("#addresses", "proof@example.org")
    page.click("button:has-text('Send test')")
    assert "Test sent to proof@example.org" in page.locator(".flash-success").inner_text()
    screenshot(page, "editor-test-sent")
    received = smtp_server.wait_for(1)
    assert received[0].rcpt_tos == ["proof@example.org"]
    assert received[0].message["Subject"].startswith("[TEST]")
    assert "Agents story 0" in received[0].text


def test_approve_and_send_with_live_progress(page, live_server_factory, make_app, smtp_server, screenshot):
    from newsletter.delivery.runner import Runner

    server, settings = start(live_server_factory, make_app, transport=smtp_server.dsn)
    number = seed_issue(settings)
    for i in range(5):
        add_subscriber(f"reader{i}@example.org")
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}")
    page.click("button:has-text('Approve')")
    assert page.locator(".page-head .badge").inner_text() == "approved"
    page.click("a:has-text('Send now…')")
    page.fill("#confirm_number", str(number + 1))
    page.click("button:has-text('Send to 5 readers')")
    assert f"Type {number} to confirm" in page.locator(".flash-error").inner_text()
    screenshot(page, "editor-send-confirm")
    page.fill("#confirm_number", str(number))
    page.click("button:has-text('Send to 5 readers')")
    assert page.locator(".progress-card").is_visible()
    screenshot(page, "editor-sending")
    runner = Runner(settings, poll=0.2).start()
    try:
        smtp_server.wait_for(5, timeout=30)
        # editor.js polls progress.json and reloads the page when the issue is sent
        page.wait_for_selector(".page-head .badge-sent", timeout=30_000)
    finally:
        runner.shutdown()
    assert sorted(m.to for m in smtp_server.messages) == [f"reader{i}@example.org" for i in range(5)]
    assert page.locator("[data-count=sent]").inner_text() == "5"
    screenshot(page, "editor-sent")


def test_import_csv_with_hostile_lines(page, live_server_factory, make_app, screenshot, tmp_path):
    server, _ = start(live_server_factory, make_app)
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(
        "email,name,topics\n"
        "one@example.org,One,\n"
        "two@example.org,Two,\n"
        "broken,Nope,\n"
        '"<img src=x onerror=alert(1)>@example.org",Hostile,\n'
        "three@example.org,\"=cmd|' /C calc'!A0\",\n"
    )
    errors = no_console_errors(page)
    log_in(page, server)
    page.click("nav.editor-nav >> text=Subscribers")
    page.click("a:has-text('Import CSV')")
    page.set_input_files("#file", str(csv_file))
    page.click("button:has-text('Preview the import')")
    preview = page.locator(".import-preview")
    assert preview.locator("[data-outcome=added] td").inner_text() == "3"
    screenshot(page, "editor-import-preview")
    with session_scope() as s:  # the preview wrote nothing
        assert s.exec(select(Subscriber.email)).all() == []
    page.click(".import-preview button[type=submit]")
    report = page.locator(".import-report")
    assert report.locator("[data-report=rejected]").inner_text() != "0"
    rejected = report.locator("table.rejected").inner_text()
    assert re.search(
        r"^4\s+email: .*not a valid email", rejected, re.M
    )  # line 4 (header is line 1) = "broken"
    assert "<img" not in report.inner_html().replace("&lt;img", "")
    screenshot(page, "editor-import")
    with session_scope() as s:
        emails = set(s.exec(select(Subscriber.email)).all())
    assert {"one@example.org", "two@example.org"} <= emails and "broken" not in emails
    page.goto(f"{server.url}/editor/subscribers")
    screenshot(page, "editor-subscribers")
    page.click("a:has-text('one@example.org')")
    assert "import" in page.locator(".facts").nth(1).inner_text()
    screenshot(page, "editor-subscriber")
    assert errors == []


def test_outbox_viewer(page, live_server_factory, make_app, screenshot):
    from newsletter.delivery.message import OutgoingMessage
    from newsletter.delivery.transports.outbox import OutboxTransport

    server, _ = start(live_server_factory, make_app)
    html = '<html><body><h1 style="color:#b8310f">Welcome aboard</h1><p>Plain and simple.</p></body></html>'
    OutboxTransport().send(
        [
            OutgoingMessage(
                sender="GET THE SIGNAL <signal@example.org>",
                to="new@example.org",
                subject="Confirm your subscription",
                text="Welcome in text",
                html=html,
            )
        ]
    )
    errors = no_console_errors(page)
    log_in(page, server)
    page.click("nav.editor-nav >> text=Outbox")
    page.click("a:has-text('Confirm your subscription')")
    page.frame_locator(".frame-wrap iframe").locator("h1:has-text('Welcome aboard')").wait_for()
    assert not page.locator("pre.text-part").is_visible()
    screenshot(page, "editor-outbox-html")
    page.click("a[data-tab=headers]")
    assert page.locator(".headers-table").is_visible()
    assert "Message-ID" in page.locator(".headers-table").inner_text()
    screenshot(page, "editor-outbox-headers")
    page.click("a[data-tab=text]")
    assert page.locator("pre.text-part").inner_text().strip() == "Welcome in text"
    assert errors == []


def test_import_preview_of_a_mailchimp_export(page, live_server_factory, make_app, screenshot, tmp_path):
    """A migration as an editor does it: Mailchimp's ZIP uploaded, the preview
    counting the suppressed by reason, then the import; at 1280 and 375 px."""
    import zipfile
    from pathlib import Path

    exports = Path(__file__).parent / "exports" / "mailchimp"
    archive = tmp_path / "members_export_6f1c2a.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(exports.glob("*.csv")):
            out.write(path, path.name)
    server, _ = start(live_server_factory, make_app)
    errors = no_console_errors(page)
    log_in(page, server)
    page.goto(f"{server.url}/editor/subscribers/import")
    page.set_input_files("#file", str(archive))
    page.click("button:has-text('Preview the import')")
    preview = page.locator(".import-preview")
    counts = {
        row.get_attribute("data-outcome"): row.locator("td").inner_text()
        for row in preview.locator(".import-summary tr").all()
    }
    assert counts == {
        "added": "3",
        "unsubscribed": "1",
        "bounced": "1",
        "complained": "1",
        "unconfirmed": "1",
    }
    assert "Zoë" in preview.locator(".import-samples").inner_text()
    screenshot(page, "editor-import-mailchimp")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "editor-import-mailchimp-375")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click(".import-preview button[type=submit]")
    page.wait_for_selector(".import-report")
    with session_scope() as s:
        statuses = dict(s.exec(select(Subscriber.email, Subscriber.status)).all())
    assert statuses["dead@example.org"] == "bounced" and statuses["gone@example.org"] == "unsubscribed"
    assert errors == []
