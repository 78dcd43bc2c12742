"""The reader's path against a real SMTP server (aiosmtpd), following the
links in the mail that server received; the transactional mail sender runs
beside the app, as in ``serve``."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from newsletter.db import session_scope
from newsletter.suppression import is_suppressed
from tests.delivery_fixtures import queued_mail, wait_for_queue
from tests.readers_fixtures import events, post_form, reader


def path(url: str) -> str:
    return urlsplit(url).path


def only(links: list[str], kind: str) -> str:
    [found] = {u for u in links if f"/{kind}/" in u}
    return path(found)


def test_subscribe_confirm_preferences_and_one_click_over_smtp(
    make_app, make_settings, mail_sender, smtp_server, topics
):
    app = make_app(transport=smtp_server.dsn)
    mail_sender(make_settings(transport=smtp_server.dsn))
    client = app.test_client()
    response = post_form(
        client, "/subscribe", {"email": "ann@example.org", "name": "Ann Smith", "topics": ["agents"]}
    )
    assert response.status_code == 302

    [confirm_mail] = smtp_server.wait_for(1)
    assert confirm_mail.rcpt_tos == ["ann@example.org"]
    assert confirm_mail.message["To"] == "ann@example.org"  # no text a stranger typed
    assert "Ann" not in confirm_mail.text and "Ann" not in confirm_mail.html
    assert confirm_mail.message["From"] == "GET THE SIGNAL <signal@example.org>"
    assert confirm_mail.message["Auto-Submitted"] == "auto-generated"
    assert confirm_mail.message.get_content_type() == "multipart/alternative"
    confirm = only(confirm_mail.links(), "confirm")
    assert confirm in confirm_mail.html  # the HTML button and the text part carry the same link

    assert "Yes, subscribe me</button>" in client.get(confirm).get_data(as_text=True)
    assert "You're subscribed" in post_form(client, confirm, {}, token_from=confirm).get_data(as_text=True)
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


def test_data_download_and_erase_over_smtp(make_app, make_settings, smtp_server, mail_sender, topics):
    client = make_app(transport=smtp_server.dsn).test_client()
    mail_sender(make_settings(transport=smtp_server.dsn))
    post_form(client, "/subscribe", {"email": "bob@example.org", "topics": ["agents", "models", "tools"]})
    confirm = only(smtp_server.wait_for(1)[0].links(), "confirm")
    post_form(client, confirm, {}, token_from=confirm)
    prefs = only(smtp_server.wait_for(2)[1].links(), "preferences")
    data = json.loads(post_form(client, prefs + "/export", {}, token_from=prefs).get_data(as_text=True))
    assert data["email"] == "bob@example.org" and data["topics"] == [] and data["status"] == "active"
    post_form(client, prefs + "/erase", {"confirm": "y"}, token_from=prefs)
    assert reader("bob@example.org") is None
    with session_scope() as session:
        assert is_suppressed(session, "bob@example.org")


def test_a_refused_recipient_fails_the_mail_and_bounces_the_reader(
    make_app, make_settings, mail_sender, smtp_server, topics
):
    smtp_server.respond = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("nobody") else None
    client = make_app(transport=smtp_server.dsn).test_client()
    mail_sender(make_settings(transport=smtp_server.dsn))
    response = post_form(client, "/subscribe", {"email": "nobody@example.org", "topics": ["agents"]})
    assert response.status_code == 302  # the same answer: the mail is the sender's business
    wait_for_queue()
    [mail] = queued_mail()
    assert mail.status == "failed" and mail.last_error.startswith("bounced: 550")
    assert reader("nobody@example.org").status == "bounced"  # the bounce policy, as for issue mail
    with session_scope() as session:
        assert is_suppressed(session, "nobody@example.org")


def test_internationalised_address_over_smtputf8(make_app, make_settings, smtp_server, mail_sender, topics):
    client = make_app(transport=smtp_server.dsn).test_client()
    mail_sender(make_settings(transport=smtp_server.dsn))
    post_form(client, "/subscribe", {"email": "josé@exämple.org", "name": "José", "topics": ["agents"]})
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["josé@xn--exmple-cua.org"]  # UTF-8 local part over SMTPUTF8, domain as A-labels
    confirm = only(mail.links(), "confirm")
    assert post_form(client, confirm, {}, token_from=confirm).status_code == 200
    assert reader("josé@exämple.org").status == "active"
