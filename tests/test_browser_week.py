"""What readers and editors meet in a real week (issue 19), in headless Chromium
against a live server: each reader's own inbox line, no lost edits, the editor
on a phone, links that lead somewhere. Screenshots land in screenshots/week-*.png."""

from __future__ import annotations

import re

import pytest

from newsletter.delivery.deliver import deliver
from newsletter.issues.preview import preview_issue
from newsletter.readers import links
from tests.editor_fixtures import EDITOR, add_subscriber, log_in, seed_issue, start
from tests.readers_fixtures import reader

pytestmark = pytest.mark.browser


def test_preview_shows_each_variants_inbox_line(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    number = seed_issue(settings, count_per_section=3)
    add_subscriber("agents@example.org", topics="agents")
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}/preview?topics=ethics")
    lines = page.locator(".inbox-lines li")
    assert lines.count() == 3
    assert "and 4 more" in lines.nth(0).inner_text()  # every section: 6 articles
    agents = lines.nth(1).inner_text()
    assert "Readers of Agents" in agents and "and 1 more" in agents and "Ethics story" not in agents
    shown = page.locator(".subject-line").inner_text()
    assert shown.count("Ethics story") == 2 and "Agents story" not in shown
    frame = page.frame_locator("#preview-frame")
    assert "3 stories this week, on Ethics." in frame.locator("body").inner_text()
    screenshot(page, "week-preview-inbox-lines")


def test_unsaved_changes_are_not_lost_on_preview(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    number = seed_issue(settings)
    log_in(page, server, EDITOR)
    page.goto(f"{server.url}/editor/issues/{number}")
    assert page.locator("#unsaved-note").is_hidden()
    page.fill("#subject", "Words I do not want to lose")
    assert page.locator("#unsaved-note").is_visible()
    screenshot(page, "week-issue-unsaved", full_page=False)
    asked: list[str] = []

    def stay(dialog):
        asked.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    page.locator(".page-head").get_by_role("link", name="Preview").click()
    page.wait_for_timeout(300)
    assert asked == ["beforeunload"]  # the browser asked, and the editor chose to stay
    assert page.url.endswith(f"/editor/issues/{number}") and page.input_value("#subject") == (
        "Words I do not want to lose"
    )
    page.locator(".page-head").get_by_role("button", name="Save draft").click()  # saving never asks
    page.wait_for_load_state()
    assert asked == ["beforeunload"] and page.input_value("#subject") == "Words I do not want to lose"
    # a reorder with the move buttons is a change too
    page.locator("table.article-table tbody tr").nth(1).locator("button[data-move=up]").click()
    assert page.locator("#unsaved-note").is_visible()
    page.locator(".page-head").get_by_role("link", name="Preview").click()
    page.wait_for_timeout(300)
    assert asked == ["beforeunload", "beforeunload"]
    page.remove_listener("dialog", stay)


def test_a_failed_erase_keeps_every_choice_and_shows_the_error_in_view(
    page, live_server_factory, make_app, topics, screenshot
):
    server, settings = start(live_server_factory, make_app)
    sub_id = add_subscriber("ada@example.org", topics="agents,tools", name="Ada")
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{server.url}/preferences/{links.preferences_token(settings, sub_id)}")
    page.get_by_role("button", name="Erase my data").click()  # the box is not ticked
    page.wait_for_load_state()
    summary = page.locator(".error-summary")
    assert summary.is_visible() and "Tick the box to confirm." in summary.inner_text()
    focused = page.evaluate("document.activeElement.id")
    assert focused == "confirm"  # the control to fix has the focus, scrolled into view
    box = page.locator("#confirm").bounding_box()
    assert 0 <= box["y"] <= 740
    # every topic and the name as they were; saving now works
    assert page.is_checked("#topics-0") and not page.is_checked("#topics-1") and page.is_checked("#topics-2")
    assert page.input_value("#name") == "Ada"
    screenshot(page, "week-preferences-erase-error-375", full_page=False)
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_text("Your preferences are saved.").wait_for()
    assert reader("ada@example.org").topics == "agents,tools"


def test_save_draft_is_a_few_tab_presses_away_on_a_phone(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    number = seed_issue(settings, count_per_section=10)  # a 20-article issue
    log_in(page, server, EDITOR)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{server.url}/editor/issues/{number}")
    page.keyboard.press("Tab")  # the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    presses = []
    while len(presses) < 5:
        page.keyboard.press("Tab")
        presses.append(page.evaluate("document.activeElement.textContent.trim()"))
        if presses[-1] == "Save draft":
            break
    assert presses[-1] == "Save draft" and len(presses) <= 3, f"Tab after the skip link reaches: {presses}"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the issue editor is {width} px wide at 375"
    screenshot(page, "week-issue-375", full_page=False)


def test_every_link_problem_offers_a_way_forward(
    page, live_server_factory, make_app, smtp_server, topics, screenshot
):
    server, settings = start(live_server_factory, make_app, transport=smtp_server.dsn)
    add_subscriber("ada@example.org", topics="agents", name="Ada")
    page.set_viewport_size({"width": 375, "height": 800})
    for broken in ("/preferences/cut-off-link", "/unsubscribe/cut-off-link"):
        response = page.goto(server.url + broken)
        assert response.status == 400 and "Bad Request" not in page.content()
        page.get_by_role("heading", name="This link is not valid").wait_for()
        assert page.get_by_label("Email address").is_visible()
    screenshot(page, "week-link-problem-375")
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_role("button", name="Send me a new link").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["ada@example.org"] and "/preferences/" in mail.text
    [prefs] = [u for u in mail.links() if "/preferences/" in u]
    page.goto(prefs)
    page.get_by_role("heading", name="Your preferences").wait_for()


def test_subscribing_an_active_address_keeps_the_promise_privately(
    page, live_server_factory, make_app, smtp_server, topics, screenshot
):
    server, settings = start(live_server_factory, make_app, transport=smtp_server.dsn)
    add_subscriber("ada@example.org", topics="agents", name="Ada")
    answers = []
    for address in ("ada@example.org", "new@example.org"):
        page.goto(server.url + "/")
        page.get_by_label("Email address").fill(address)
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        answers.append((page.url, page.locator("main").inner_text()))
    assert answers[0] == answers[1]  # the public page is the same: nothing to enumerate
    mails = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(2)}
    told = mails["ada@example.org"]
    assert "already subscribed" in told.text and "/preferences/" in told.text and "/confirm/" not in told.text
    confirmation = mails["new@example.org"]
    # the page and the mail state the same validity period
    days = settings.token_max_age_days
    assert f"The link works for {days} days." in answers[1][1]
    assert f"it works for {days} days" in confirmation.text
    screenshot(page, "week-check-inbox")


def test_reader_pages_ship_no_glyph_a_system_may_lack(page, live_server_factory, make_app, topics):
    server, settings = start(live_server_factory, make_app)
    sub = add_subscriber("ada@example.org", topics="agents")
    paths = ["/", "/subscribe/check-your-inbox", "/confirm/x", f"/preferences/{links.preferences_token(settings, sub)}",
             f"/unsubscribe/{links.unsubscribe_token(settings, sub)}", "/issues"]  # fmt: skip
    risky = re.compile("[\u2300-\u2bff\U0001f000-\U0001ffff\ue000-\uf8ff]")  # symbols, emoji, private use
    for path in paths:
        page.goto(server.url + path)
        shown = page.evaluate(
            """() => document.body.innerText + Array.from(document.querySelectorAll('*')).map(e =>
                 getComputedStyle(e, '::before').content + getComputedStyle(e, '::after').content).join('')"""
        )
        assert not risky.findall(shown), f"{path} shows {risky.findall(shown)}"


def test_dashboard_after_a_send_speaks_plainly_on_a_phone(page, live_server_factory, make_app, screenshot):
    server, settings = start(live_server_factory, make_app)
    add_subscriber("a@example.org")
    number = seed_issue(settings)
    log_in(page, server)
    page.goto(f"{server.url}/editor/issues/{number}")
    page.get_by_role("button", name="Approve").first.click()
    flash = page.locator(".flash-success").inner_text()
    assert flash.startswith("Issue 001 is approved") and "done." not in flash
    deliver(settings, number, here=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{server.url}/editor/dashboard")
    card = page.locator(".next-slot").inner_text()
    assert "Mondays at 08:00 (UTC)" in card and "0 8 * * mon" not in card
    assert "Edit draft" not in card and "Last sent:" in card
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "week-dashboard-after-send-375")


def test_an_import_keeps_a_readers_own_choices_unless_asked(
    page, live_server_factory, make_app, topics, screenshot, tmp_path
):
    server, settings = start(live_server_factory, make_app)
    sub_id = add_subscriber("ann@example.org", topics="agents", name="Ann")  # she chose these herself
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("email,name,topics\nann@example.org,Ann Smith,tools\n")
    log_in(page, server)
    for update in (False, True):
        page.goto(f"{server.url}/editor/subscribers/import")
        page.set_input_files("#file", str(csv_file))
        if update:
            page.check("#update")
        page.click("button:has-text('Preview the import')")
        page.click(".import-preview button[type=submit]")
        report = page.locator(".import-report").inner_text()
        if not update:
            assert "kept the reader's name 'Ann' (file: 'Ann Smith')" in report
            assert (reader("ann@example.org").name, reader("ann@example.org").topics) == ("Ann", "agents")
            screenshot(page, "week-import-kept")
    assert "'Ann' → 'Ann Smith'" in report or "Ann Smith" in report
    assert (reader("ann@example.org").name, reader("ann@example.org").topics) == ("Ann Smith", "tools")
    page.goto(f"{server.url}/editor/subscribers/{sub_id}")
    history = page.locator(".event-list").inner_text()
    assert "import" in history and "Ann Smith" in history  # the reader's history records the change


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])


def test_focus_rings_stand_out_on_both_backgrounds(page, live_server_factory, make_app):
    server, _ = start(live_server_factory, make_app)
    log_in(page, server)
    page.goto(f"{server.url}/editor/issues")
    checked = 0
    for selector, background in ((".editor-nav a", ".site-header"), ("main :is(a, button)", "body")):
        page.locator(selector).first.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focus by keyboard, so :focus-visible applies
        ring = page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth, s.outlineColor]; }"
        )
        behind = page.evaluate(f"getComputedStyle(document.querySelector('{background}')).backgroundColor")
        assert ring[0] == "solid" and float(ring[1].removesuffix("px")) >= 2, ring
        ratio = contrast(_rgb(ring[2]), _rgb(behind))
        assert ratio >= 3, f"focus ring {ring[2]} on {behind}: {ratio:.2f}:1"
        checked += 1
    assert checked == 2


def test_the_issue_email_names_itself_and_its_buttons_pass_aa(app, settings):
    number = seed_issue(settings)
    html = preview_issue(settings, number)
    assert '<html lang="en"' in html and re.search(r"<title>Issue 001: [^<]+</title>", html)
    # the email's landmark: what email allows is role="article" with the title as its name
    # (a webmail page has its own main landmark, which a second one would contradict)
    assert re.search(
        r'<div aria-label="Issue 001[^"]*" aria-roledescription="email" role="article" lang="en"', html
    )
    buttons = set(re.findall(r"background:(#[0-9a-f]{6});color:#ffffff", html))
    assert buttons, "no button found"
    for colour in buttons:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert contrast(rgb, (255, 255, 255)) >= 4.5, colour
