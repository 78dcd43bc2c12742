"""The API's pages in headless Chromium at a phone's width (375 px): the
editor's tokens (create, the secret shown once, revoke), webhooks and audit
pages, and the API reference; nothing wider than the screen, no script or
CSP errors. Screenshots: screenshots/api-*.png."""

from __future__ import annotations

import pytest

from tests.test_browser_editor import log_in, no_console_errors, start

pytestmark = pytest.mark.browser


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_token_webhook_audit_and_reference_pages_at_375px(
    chromium, live_server_factory, make_app, screenshot
):
    server, _ = start(live_server_factory, make_app)
    context = chromium.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    try:
        errors = no_console_errors(page)
        log_in(page, server)
        page.goto(f"{server.url}/editor/api-tokens")
        page.fill("#name", "weekly agent")
        page.check("input[value='issues:read']")
        page.check("input[value='issues:send']")
        page.click("button:has-text('Create token')")
        secret = page.locator("#token-secret").inner_text()
        screenshot(page, "api-tokens-375")
        assert secret.startswith("gts_") and fits(page), page.evaluate(
            "[...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
            ".map(e => e.tagName + '.' + e.className).slice(0, 12)"
        )
        page.goto(f"{server.url}/editor/api-tokens")
        assert secret not in page.content()
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Revoke')")
        assert "revoked" in page.locator("table").inner_text()

        page.goto(f"{server.url}/editor/webhooks")
        page.fill("#url", "https://hooks.example.org/signal")
        page.check("input[value='issue.sent']")
        page.click("button:has-text('Add webhook')")
        screenshot(page, "api-webhooks-375")
        assert page.locator("#webhook-secret").inner_text().startswith("whsec_") and fits(page)

        page.goto(f"{server.url}/editor/audit")
        screenshot(page, "api-audit-375")
        assert "POST /editor/api-tokens" in page.content() and fits(page)

        page.goto(f"{server.url}/api/v1/reference")
        screenshot(page, "api-reference-375", full_page=False)
        assert "PATCH /issues/{number}" in page.content() and fits(page)
        assert errors == []
    finally:
        context.close()
