"""The outside check, as an operator would run it: `newsletter serve` as a
real process, a real SMTP server that goes down and comes back. A reader who
subscribes during the outage gets the confirmation once the server is back;
the subscribe itself never waits."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.helpers import SmtpSink, free_port, start_newsletter, stop_process

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def subscribe(url: str, email: str) -> tuple[requests.Response, float]:
    browser = requests.Session()
    token = CSRF.search(browser.get(f"{url}/", timeout=10).text).group(1)
    started = time.perf_counter()
    response = browser.post(
        f"{url}/subscribe", data={"csrf_token": token, "email": email}, allow_redirects=False, timeout=10
    )
    return response, time.perf_counter() - started


def test_a_confirmation_asked_for_during_an_smtp_outage_arrives_when_smtp_is_back(tmp_path):
    port = free_port()
    smtp = SmtpSink(port=port)
    smtp.start()
    proc, url = start_newsletter(
        ["serve"], tmp_path, {"NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}?timeout=5"}
    )
    try:
        response, _ = subscribe(url, "before@example.org")
        assert response.status_code == 302
        assert smtp.wait_for(1, timeout=15)[0].rcpt_tos == ["before@example.org"]

        smtp.stop()  # the outage
        response, took = subscribe(url, "during@example.org")
        assert response.status_code == 302 and took < 2.0  # nobody waits on the dead server
        time.sleep(3)  # the sender tries, fails, and keeps the mail

        smtp = SmtpSink(port=port)  # back on the same port
        smtp.start()
        [mail] = smtp.wait_for(1, timeout=90)  # the sender backs off at most a minute
        assert mail.rcpt_tos == ["during@example.org"]
        assert mail.message["Subject"] == "Confirm your subscription to GET THE SIGNAL"
        assert "/confirm/" in mail.text
    finally:
        output = stop_process(proc)
        smtp.stop()
    assert "transactional mail waits for the transport" in output  # the outage was seen and logged
