"""The reader's path against a real SMTP server (aiosmtpd), following the
links in the mail that server received."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from newsletter.db import session_scope
from newsletter.delivery.transactional import send_transactional
from newsletter.suppression import is_suppressed
from tests.readers_fixtures import events, post_form, reader


def path(url: str) -> str:
    return urlsplit(url).path


def only(links: list[str], kind: str) -> str:
    [found] = {u for u in links if f"/{kind}/" in u}
    return path(found)


def test_subscribe_confirm_preferences_and_one_click_over_smtp(make_app, smtp_server, topics):
    app = make_app(transport=smtp_server.dsn)
    client = app.test_client()
    response = post_form(
        client, "/subscribe", {"email": "ann@example.org", "name": "Ann Smith", "topics": ["agents"]}
    )
    assert response.status_code == 302

    [confirm_mail] = smtp_server.wait_for(1)
    assert confirm_mail.rcpt_tos == ["ann@example.org"]
    assert confirm_mail.message["To"] == "Ann Smith <ann@example.org>"
    assert confirm_mail.message["From"] == "GET THE SIGNAL <signal@example.org>"
    assert confirm_mail.message["Auto-Submitted"] == "auto-generated"
    assert confirm_mail.message.get_content_type() == "multipart/alternative"
    confirm = only(confirm_mail.links(), "confirm")
    assert confirm in confirm_mail.html  # the HTML button and the text part carry the same link

    assert "You're subscribed" in client.get(confirm).get_data(as_text=True)
    welcome = smtp_server.wait_for(2)[1]
    assert welcome.message["Subject"] == "Welcome to GET THE SIGNAL"
    prefs, unsubscribe = only(welcome.links(), "preferences"), only(welcome.links(), "unsubscribe")
    assert welcome.message["List-Unsubscribe"] == f"<http://localhost{unsubscribe}>"

    saved = post_form(client, prefs, {"name": "Ann S.", "topics": ["models", "tools"]}, token_from=prefs)
    assert saved.status_code == 302
    assert reader("ann@example.org").topics == "models,tools" and reader("ann@example.org").name == "Ann S."

    # RFC 8058: the mail client POSTs the header's URL with no cookie and no CSRF token.
    header_url = welcome.message["List-Unsubscribe"].strip("<>")
    mail_client = app.test_client(use_cookies=False)
    one_click = mail_client.post(path(header_url), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and not one_click.headers.get("Location")
    assert reader("ann@example.org").status == "unsubscribed"
    assert [e.detail for e in events("unsubscribe")] == ["one-click"]
    assert len(smtp_server.messages) == 2  # leaving sends nothing


def test_data_download_and_erase_over_smtp(make_app, smtp_server, topics):
    client = make_app(transport=smtp_server.dsn).test_client()
    post_form(client, "/subscribe", {"email": "bob@example.org", "topics": ["agents", "models", "tools"]})
    client.get(only(smtp_server.wait_for(1)[0].links(), "confirm"))
    prefs = only(smtp_server.wait_for(2)[1].links(), "preferences")
    data = json.loads(post_form(client, prefs + "/export", {}, token_from=prefs).get_data(as_text=True))
    assert data["email"] == "bob@example.org" and data["topics"] == [] and data["status"] == "active"
    post_form(client, prefs + "/erase", {"confirm": "y"}, token_from=prefs)
    assert reader("bob@example.org") is None
    with session_scope() as session:
        assert is_suppressed(session, "bob@example.org")


def test_refused_recipient_is_a_result_not_a_crash(make_app, smtp_server, topics, settings):
    smtp_server.respond = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("nobody") else None
    client = make_app(transport=smtp_server.dsn).test_client()
    response = post_form(client, "/subscribe", {"email": "nobody@example.org", "topics": ["agents"]})
    assert response.status_code == 302  # the same answer; the failure is logged
    assert reader("nobody@example.org").status == "pending"


def test_send_transactional_reports_a_dead_server_as_transient(make_settings):
    settings = make_settings(transport="smtp://127.0.0.1:9")
    result = send_transactional(
        settings,
        to="ann@example.org",
        subject="Hi",
        template="confirm",
        context={
            "name": "",
            "email": "ann@example.org",
            "confirm_url": "http://x/confirm/t",
            "max_age_days": 7,
        },
    )
    assert result.status == "transient" and "cannot connect" in result.error


def test_internationalised_address_over_smtputf8(make_app, smtp_server, topics):
    client = make_app(transport=smtp_server.dsn).test_client()
    post_form(client, "/subscribe", {"email": "josé@exämple.org", "name": "José", "topics": ["agents"]})
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["josé@xn--exmple-cua.org"]  # UTF-8 local part over SMTPUTF8, domain as A-labels
    assert client.get(only(mail.links(), "confirm")).status_code == 200
    assert reader("josé@exämple.org").status == "active"
