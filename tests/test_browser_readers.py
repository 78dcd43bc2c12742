"""The reader's path in headless Chromium, with mail received by a real SMTP server."""

from __future__ import annotations

import pytest

from tests.editor_fixtures import make_account
from tests.readers_fixtures import reader

pytestmark = pytest.mark.browser


def only(links: list[str], kind: str) -> str:
    [found] = {u for u in links if f"/{kind}/" in u}
    return found


def test_subscribe_confirm_change_topics_unsubscribe(
    page, live_server_factory, make_app, smtp_server, topics, screenshot
):
    server = live_server_factory(make_app, transport=smtp_server.dsn)

    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server.url + "/")
    assert (
        page.locator(".site-header .tagline").inner_text()
        == "GET THE SIGNAL — AI agent intel, delivered weekly"
    )
    box = page.locator(".hp").bounding_box()
    assert box["x"] + box["width"] <= 0  # the honeypot is off screen: not for people
    screenshot(page, "readers-subscribe-375")

    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Subscribe").click()
    assert page.locator("#email-error").is_visible()
    screenshot(page, "readers-subscribe-error-375")

    page.get_by_label("Email address").fill("Ada@Example.org")
    page.get_by_label("Name (optional)").fill("Ada Lovelace")
    page.get_by_label("Tools").uncheck()
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    screenshot(page, "readers-check-inbox-375")

    [confirmation] = smtp_server.wait_for(1)
    assert confirmation.rcpt_tos == ["ada@example.org"]
    page.goto(only(confirmation.links(), "confirm"))
    page.get_by_role("heading", name="Confirm your subscription").wait_for()
    screenshot(page, "readers-confirm-375")
    assert reader("ada@example.org").status == "pending"  # opening the link changed nothing
    page.get_by_role("button", name="Yes, subscribe me").click()
    page.get_by_role("heading", name="You're subscribed, Ada Lovelace!").wait_for()
    screenshot(page, "readers-confirmed-375")
    assert reader("ada@example.org").topics == "agents,models"

    page.get_by_role("link", name="Choose your topics").click()
    page.get_by_role("heading", name="Your preferences").wait_for()
    page.get_by_label("Agents").uncheck()
    page.get_by_label("Tools").check()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_text("Your preferences are saved.").wait_for()
    screenshot(page, "readers-preferences-375")
    assert reader("ada@example.org").topics == "models,tools"
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "readers-preferences-1280")

    welcome = smtp_server.wait_for(2)[1]
    page.goto(only(welcome.links(), "unsubscribe"))
    page.get_by_role("heading", name="Unsubscribe from GET THE SIGNAL?").wait_for()
    screenshot(page, "readers-unsubscribe-1280")
    assert reader("ada@example.org").status == "active"  # showing the page changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You're unsubscribed").wait_for()
    screenshot(page, "readers-unsubscribed-1280")
    assert reader("ada@example.org").status == "unsubscribed"
    assert "ada@example.org" not in page.content() and "/preferences/" not in page.content()

    page.get_by_role("button", name="Email me my preferences link").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    link_mail = smtp_server.wait_for(3)[2]
    assert link_mail.rcpt_tos == ["ada@example.org"]
    page.goto(only(link_mail.links(), "preferences"))
    page.get_by_role("button", name="Resubscribe").click()
    page.get_by_text("Welcome back!").wait_for()
    assert reader("ada@example.org").status == "active"


def test_front_page_and_outbox_at_both_widths(page, live_server_factory, make_app, topics, screenshot):
    """The demo's path: subscribe, then read the confirmation in the outbox —
    behind the admin login the demo prints, as /outbox is in every configuration."""
    server = live_server_factory(make_app, env="development")
    make_account("demo-admin@example.org", "demo password 123", "admin")
    page.goto(server.url + "/")
    screenshot(page, "readers-subscribe-1280")
    page.get_by_label("Email address").fill("newcomer@example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    page.goto(server.url + "/outbox")
    page.get_by_role("heading", name="Editor login").wait_for()  # no reader's mail without a login
    page.get_by_label("Email address").fill("demo-admin@example.org")
    page.get_by_label("Password").fill("demo password 123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Confirm your subscription to GET THE SIGNAL").click()
    frame = page.frame_locator("iframe[title='HTML part']")
    frame.get_by_text("Yes, subscribe me").wait_for()
    screenshot(page, "readers-outbox-message-1280")
    frame.get_by_role("link", name="Yes, subscribe me").click()  # opens in the top window
    page.get_by_role("button", name="Yes, subscribe me").click()
    page.get_by_role("heading", name="You're subscribed!").wait_for()
    assert reader("newcomer@example.org").status == "active"
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server.url + "/outbox")
    screenshot(page, "readers-outbox-375")
