"""The pages in local-time mode. The editor: the approval deadline is the
first zone's moment, "send now" says it reaches everyone now, and the
dashboard and the issue page show the waves still to come. The reader: a
browser in another zone subscribes in it and changes it on the preferences
page. Browser tests take screenshots of each."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from newsletter import clock
from newsletter.db import session_scope
from newsletter.delivery.send import start_send
from newsletter.issues.service import approve_issue, assemble_issue
from newsletter.models import Delivery, Subscriber
from tests.editor_fixtures import ADMIN, Browser, add_subscriber, log_in, login, make_account, seed_articles
from tests.readers_fixtures import reader

SLOT = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # Sunday 08:00 CEST
LOCAL = dict(local_time_delivery=True, schedule="0 8 * * sun", timezone="Europe/Berlin", review_hours=24)
ZONES = ["Pacific/Kiritimati", "Asia/Kathmandu", "", "America/St_Johns", "Pacific/Pago_Pago"]


@pytest.fixture
def app(make_app):
    clock.set(SLOT - timedelta(days=2))
    return make_app(**LOCAL)


def readers_in_zones() -> None:
    for n, zone in enumerate(ZONES):
        sid = add_subscriber(f"r{n}@example.org")
        with session_scope() as session:
            session.execute(update(Subscriber).where(Subscriber.id == sid).values(timezone=zone))


def slot_issue(settings) -> int:
    seed_articles(settings)
    result = assemble_issue(settings, slot_at=SLOT)
    assert result.issue is not None, result.message
    return result.issue.number


def test_deadline_send_now_and_waves_to_come(app, admin):
    settings = app.extensions["signal_settings"]
    readers_in_zones()
    number = slot_issue(settings)

    page = admin.get(f"/editor/issues/{number}").get_data(as_text=True)
    assert "Approve before Sat 28 Mar 2026, 19:00 CET" in page  # Kiritimati's 08:00
    assert "the last Sun 29 Mar 2026, 21:00 CEST" in page  # Pago Pago's 08:00
    dashboard = admin.get("/editor/dashboard").get_data(as_text=True)
    assert "the first readers Sat 28 Mar 2026, 19:00 CET (approve before)" in dashboard
    assert "assembled from Fri 27 Mar 2026, 19:00 CET" in dashboard  # the review counts from the first zone
    assert (
        "Time zones: 1 active reader without one gets it at Europe/Berlin's time; 0 unknown zones"
        in dashboard
    )

    approve_issue(number, by=ADMIN[0])
    confirm = admin.get(f"/editor/issues/{number}/send").get_data(as_text=True)
    assert re.search(r"<dt>First reader</dt><dd>now</dd>\s*<dt>Last reader</dt><dd>now", confirm)
    assert "reaches every reader at once, in every time zone" in confirm

    clock.set(SLOT - timedelta(hours=12))  # Kiritimati's moment: the scheduler starts the waves
    start_send(settings, number, local_slot=SLOT)
    admin = Browser(app.test_client())  # 36 hours later: the session has ended, log in again
    assert login(admin.client, *ADMIN).status_code == 302
    dashboard = admin.get("/editor/dashboard").get_data(as_text=True)
    waves = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>(\d+)</td></tr>", dashboard)
    assert waves == [
        ("Sun 29 Mar 2026, 04:15 CEST", "Asia/Kathmandu", "1"),
        ("Sun 29 Mar 2026, 08:00 CEST", "Europe/Berlin", "1"),
        ("Sun 29 Mar 2026, 12:30 CEST", "America/St_Johns", "1"),
        ("Sun 29 Mar 2026, 21:00 CEST", "Pacific/Pago_Pago", "1"),
    ]  # Kiritimati's row is due: not a wave to come
    assert "4 readers still to get it" in dashboard
    page = admin.get(f"/editor/issues/{number}").get_data(as_text=True)
    assert "Waves to come" in page and "Pacific/Pago_Pago · 1 reader" in page


@pytest.mark.browser
def test_screens(page, live_server_factory, make_app, screenshot):
    clock.set(SLOT - timedelta(days=2))
    server = live_server_factory(make_app, **LOCAL)
    settings = server.app.extensions["signal_settings"]
    make_account(*ADMIN, "admin")
    readers_in_zones()
    number = slot_issue(settings)
    log_in(page, server)
    assert "approve before" in page.locator(".local-window").inner_text()
    page.goto(f"{server.url}/editor/issues/{number}")
    assert "Approve before" in page.content()
    screenshot(page, "editor-local-time-deadline")
    approve_issue(number, by=ADMIN[0])
    page.goto(f"{server.url}/editor/issues/{number}/send")
    assert page.locator(".send-when").inner_text().count("now") == 2
    screenshot(page, "editor-local-time-send-now")
    clock.set(SLOT - timedelta(hours=12))
    start_send(settings, number, local_slot=SLOT)
    log_in(page, server)  # 36 hours later: a new session
    assert page.locator(".waves-card tbody tr").count() == 4
    screenshot(page, "editor-local-time-waves")


@pytest.mark.browser
def test_browser_zone_reaches_the_form_and_preferences_change_it(
    chromium, live_server_factory, make_app, smtp_server, topics, screenshot
):
    """Chromium set to Kathmandu's zone: static/timezone.js fills the hidden
    field (under the app's CSP, no inline script), the reader is stored in
    Asia/Kathmandu, and their preferences page moves them to St John's."""
    server = live_server_factory(make_app, transport=smtp_server.dsn, local_time_delivery=True)
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kathmandu")
    page = context.new_page()
    errors: list[str] = []
    page.on(  # script errors and CSP refusals (a missing favicon is not one)
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None
        ),
    )
    try:
        page.goto(server.url + "/")
        # Chromium's ICU still says "Asia/Katmandu", the tz database's old name (a link it keeps)
        zone = page.locator("input[name=timezone]").input_value()
        assert zone in ("Asia/Kathmandu", "Asia/Katmandu")
        page.get_by_label("Email address").fill("nepal@example.org")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        assert reader("nepal@example.org").timezone == zone

        [confirmation] = smtp_server.wait_for(1)
        page.goto(next(u for u in confirmation.links() if "/confirm/" in u))
        page.get_by_role("button", name="Yes, subscribe me").click()
        page.get_by_role("link", name="Choose your topics").click()
        page.get_by_role("heading", name="Your preferences").wait_for()
        assert page.get_by_label("Time zone").input_value() == zone
        page.get_by_label("Time zone").select_option("America/St_Johns")
        screenshot(page, "readers-preferences-timezone")
        page.get_by_role("button", name="Save preferences").click()
        page.get_by_text("Your preferences are saved").wait_for()
        assert reader("nepal@example.org").timezone == "America/St_Johns"
        assert errors == []
    finally:
        context.close()


def test_editors_send_now_is_everyone_now(app, admin):
    settings = app.extensions["signal_settings"]
    readers_in_zones()
    number = slot_issue(settings)
    approve_issue(number, by=ADMIN[0])
    admin.get(f"/editor/issues/{number}/send")
    sent = admin.post(f"/editor/issues/{number}/send", data={"confirm_number": number}, follow_redirects=True)
    assert "is sending: every reader gets it now, in every time zone" in sent.get_data(as_text=True)
    with session_scope() as session:
        rows = session.execute(select(Delivery.next_attempt_at, Delivery.timezone)).all()
    assert len(rows) == len(ZONES) and {tuple(r) for r in rows} == {(clock.now(), "")}


def test_a_send_at_a_chosen_time_says_it_reaches_everyone_at_once(app, admin):
    """Only the weekly slot goes out at each reader's own time: the schedule
    form, its confirmation and the scheduled issue's page say that a chosen
    time is one moment for every reader, in every zone."""
    readers_in_zones()
    number = slot_issue(app.extensions["signal_settings"])
    page = admin.get(f"/editor/issues/{number}").get_data(as_text=True)
    assert "sends it at that time to every reader at once, in every time zone" in page
    done = admin.post(
        f"/editor/issues/{number}/schedule", data={"when": "2026-03-28T12:00"}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        "is scheduled for Sat 28 Mar 2026 12:00 CET: every reader gets it then, in every time zone at once"
        in done
    )
    assert (
        "Scheduled: goes out Sat 28 Mar 2026, 12:00 CET to every reader at once, in every time zone" in done
    )


def test_the_readers_page_shows_their_zone(app, admin):
    readers_in_zones()
    with session_scope() as session:
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
    kathmandu = admin.get(f"/editor/subscribers/{ids['r1@example.org']}").get_data(as_text=True)
    assert "<dt>Time zone</dt><dd>Asia/Kathmandu</dd>" in kathmandu
    home = admin.get(f"/editor/subscribers/{ids['r2@example.org']}").get_data(as_text=True)
    assert "<dt>Time zone</dt><dd>the newsletter&#39;s (Europe/Berlin)</dd>" in home
