"""In development the base URL follows the address served, unless it was set:
links in mail and the printed editor login lead to the server that runs."""

from __future__ import annotations

import re

import pytest

from newsletter.config import load_settings, served_at
from tests.helpers import start_newsletter, stop_process


def _settings(tmp_path, **environ):
    return load_settings({"NEWSLETTER_INSTANCE_PATH": str(tmp_path), **environ}, dotenv=False)


def test_an_unset_base_url_follows_host_and_port(tmp_path):
    settings = _settings(tmp_path)
    assert served_at(settings, "127.0.0.1", 5091, {}).base_url == "http://127.0.0.1:5091"
    assert served_at(settings, "0.0.0.0", 8080, {}).base_url == "http://localhost:8080"
    assert served_at(settings, "::1", 8080, {}).base_url == "http://[::1]:8080"
    assert served_at(settings, "127.0.0.1", 5091, {}).effective_list_id == "get-the-signal.127.0.0.1"


def test_a_base_url_that_was_set_always_wins(tmp_path):
    environ = {"NEWSLETTER_BASE_URL": "http://localhost:5000"}  # set, even to the default
    settings = _settings(tmp_path, **environ)
    assert served_at(settings, "127.0.0.1", 5091, environ).base_url == "http://localhost:5000"
    given = _settings(tmp_path, NEWSLETTER_BASE_URL="https://news.example.org")
    assert served_at(given, "127.0.0.1", 5091, {}).base_url == "https://news.example.org"
    production = _settings(
        tmp_path,
        NEWSLETTER_ENV="production",
        NEWSLETTER_SECRET_KEY="x" * 40,
        NEWSLETTER_BASE_URL="https://news.example.org",
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path}/p.db",
    )
    assert served_at(production, "0.0.0.0", 8000, {}).base_url == "https://news.example.org"


@pytest.mark.slow
@pytest.mark.browser
def test_demo_on_another_port_mails_links_to_itself(tmp_path, page, screenshot):
    proc, url = start_newsletter(["demo"], tmp_path, base_url=False)
    try:
        password = (tmp_path / "instance" / "demo_editor_password").read_text().strip()
        page.goto(f"{url}/")
        page.get_by_label("Email address").fill("port@example.org")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        page.goto(f"{url}/editor/login")
        page.fill("#email", "editor@example.org")
        page.fill("#password", password)
        page.click("button:has-text('Log in')")
        page.wait_for_url(re.compile(r".*/editor/dashboard$"))
        page.goto(f"{url}/editor/outbox?q=port@example.org")
        page.locator("table a", has_text="Confirm").first.click()
        body = page.locator("body").inner_text()
        confirm = re.search(r"http://[^\s\"<>]+/confirm/[^\s\"<>]+", page.content())
        assert confirm and confirm.group(0).startswith(f"{url}/confirm/"), body[:2000]
        screenshot(page, "week-demo-port-mail")
        page.goto(confirm.group(0).replace("&amp;", "&"))
        page.get_by_role("button", name="Yes, subscribe me").wait_for()  # the link leads to this server
    finally:
        output = stop_process(proc)
    assert f"demo: editor login at {url}/editor/login" in output
    assert f"public URL {url}" in output
