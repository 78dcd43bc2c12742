"""Readers with international addresses: IDN domains, UTF-8 local parts over
SMTPUTF8 and long names in several scripts. Every message goes through the
real pipeline to a real SMTP server (aiosmtpd) and is read back by two
independent MIME parsers, Python's ``email`` and Node's ``mailparser``.

What must hold for each one: the structured headers (List-Unsubscribe,
List-Id, Message-ID, the From and To addresses) are never RFC 2047 encoded
words, so mailparser finds the unsubscribe URL and mailto (mailbox providers
need them for their button and for one-click); long headers are folded at
spaces; quoted-printable and base64 lines are at most 76 characters
(RFC 2045); only a UTF-8 local part takes the SMTPUTF8 path.
"""

from __future__ import annotations

import re

import idna
import pytest

from newsletter.db import init_engine, session_scope
from newsletter.delivery.deliver import deliver
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.messages import list_id, list_unsubscribe
from newsletter.delivery.mime import needs_smtputf8
from newsletter.delivery.testsend import send_test
from newsletter.mail_encoding import ascii_uri, encode_structured, wire_address
from newsletter.readers import service
from tests.delivery_fixtures import make_issue
from tests.helpers import mailparser

LONG = (
    "Иван Иванович Длинноимённый-Преображенский · Ζωή Παπαδοπούλου · محمد عبد الله الهاشمي · "
    "देवनागरी नाम · 山田太郎 · 김민준 · Łukasz Żółć"
)
READERS = [
    # (address as the reader typed it, name, needs SMTPUTF8)
    ("ann@example.org", "Ann Example", False),  # the common path
    ("juergen@Bücher.example", "Jürgen Groß", False),  # IDN domain, ASCII local part: A-labels, no SMTPUTF8
    ("zoë@exämple.org", "Zoë Ünïcode", True),  # UTF-8 local part
    ("用户@例子.广告", "山田 太郎", True),  # CJK address and name
    ("ivan@пример.рф", LONG, False),  # a 150-character name in seven scripts
    ("bob@example.org", 'O\'Brien, "Bob" (the 2nd) 😀', False),  # specials and an emoji
]
SUBJECT = "Issue 001: Grüße, 日本語 and Ελληνικά — " + "a long subject line " * 4


def host_of(url: str) -> str:
    return idna.encode(url.partition("://")[2], uts46=True).decode()


def unicode_address(address: str) -> str:
    """The address with its domain in U-labels, the way people write it."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{idna.decode(domain.lower())}"


def lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").strip().split("\n")


def header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")


def unfolded(raw: bytes) -> dict[str, str]:
    """Header name (lower case) → its raw value with the folds removed."""
    values = {}
    for field in re.split(r"\r\n(?=[^ \t])", header_block(raw)):
        name, _, value = field.partition(":")
        values[name.lower()] = value.replace("\r\n", "").strip()
    return values


def check_lines(raw: bytes) -> None:
    """Header lines fold at spaces (a line over 78 is one unbreakable word);
    every body line, quoted-printable or base64, is at most 76 characters."""
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.decode("utf-8").split("\r\n"):
        assert len(line.encode()) <= 998
        if len(line) > 78:
            assert " " not in line.strip() or re.fullmatch(r"[\w-]+: \S+,?", line), line
    long_lines = [line for line in body.split(b"\r\n") if len(line) > 76]
    assert long_lines == [], f"{len(long_lines)} body lines over 76 characters"


def check_message(raw: bytes, parsed: dict, *, to, name, subject, sender, list_id=None):
    """The structured headers of one message as both parsers read them."""
    headers = unfolded(raw)
    for structured in ("list-unsubscribe", "list-id", "message-id", "from", "to"):
        value = headers.get(structured, "")
        address_part = value.rpartition("<")[2] if structured in ("from", "to") else value
        assert "=?" not in address_part, f"{structured} holds an encoded word: {value}"
    check_lines(raw)
    # mailparser: the addresses, decoded names and subject
    assert [unicode_address(a["address"]) for a in parsed["to"]] == [unicode_address(to)]
    assert [a["name"] for a in parsed["to"]] == [name]
    assert [unicode_address(a["address"]) for a in parsed["from"]] == [unicode_address(sender)]
    assert parsed["subject"] == subject
    assert parsed["messageId"] == headers["message-id"]
    if list_id is not None:
        assert parsed["list"]["id"]["id"] == list_id
    return headers


@pytest.fixture
def international(make_settings, smtp_server):
    settings = make_settings(
        transport=smtp_server.dsn,
        base_url="https://news.example.org",
        mail_from="Zoë’s Signal — 信号 <signal@example.org>",
    )
    init_engine(settings.database_url)
    return settings


def test_issue_mail_to_international_readers_reads_back_in_both_parsers(international, smtp_server):
    settings = international
    for address, name, _ in READERS:
        service.subscribe(settings, email=address, name=name, source="editor", double_opt_in=False)
    make_issue(settings, 1, subject=SUBJECT)
    deliver(settings, 1, here=True)
    received = smtp_server.wait_for(len(READERS))
    by_rcpt = {m.to: m for m in received}
    parsed = mailparser([m.data for m in received])
    for address, name, smtputf8 in READERS:
        stored = service.normalise_email(address, settings)
        envelope = wire_address(stored)
        message = by_rcpt[envelope]  # an IDN domain travels as A-labels in RCPT TO
        node = parsed[received.index(message)]
        headers = check_message(
            message.data,
            node,
            to=stored,
            name=name,
            subject=SUBJECT,
            list_id="get-the-signal.news.example.org",
            sender="signal@example.org",
        )
        # SMTPUTF8 only for a UTF-8 local part; everything else is 7-bit ASCII headers
        assert (not header_block(message.data).isascii()) is smtputf8
        # the unsubscribe URL and mailto, found by mailparser as a mailbox provider would
        unsubscribe = node["list"]["unsubscribe"]
        assert unsubscribe["url"].startswith("https://news.example.org/unsubscribe/")
        assert unsubscribe["mail"].startswith("signal@example.org?subject=unsubscribe%20")
        assert unsubscribe["url"] in message.text and unsubscribe["url"] in node["text"]
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        # both parsers decode the same bodies, with the reader's name in the greeting
        first_name = name.split()[0]
        assert lines(node["text"]) == lines(message.text) and first_name in message.text
        assert lines(node["html"]) == lines(message.html) and "Read the article" in node["html"]
        assert message.message["Subject"] == SUBJECT


def test_one_click_works_from_the_url_mailparser_found(international, smtp_server, make_app):
    settings = international
    service.subscribe(settings, email="zoë@exämple.org", name="Zoë", source="editor", double_opt_in=False)
    make_issue(settings, 1)
    deliver(settings, 1, here=True)
    [message] = smtp_server.wait_for(1)
    [node] = mailparser([message.data])
    path = node["list"]["unsubscribe"]["url"].removeprefix("https://news.example.org")
    client = make_app(base_url="https://news.example.org").test_client()
    response = client.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (200, 204)
    assert service_status("zoë@exämple.org") == "unsubscribed"


def service_status(address: str) -> str:
    from sqlmodel import select

    from newsletter.db import session_scope
    from newsletter.models import Subscriber

    with session_scope() as session:
        return session.exec(select(Subscriber.status).where(Subscriber.email == address)).one()


def test_confirmation_welcome_and_test_mails_read_back_in_both_parsers(
    international, smtp_server, mail_sender
):
    settings = international
    mail_sender(settings)  # transactional mail is queued and sent by the sender, as in `serve`
    for address, name, _ in READERS:
        service.subscribe(settings, email=address, name=name, source="form", consent_text="yes")
    # a batch goes out over two connections, so the mails arrive in any order
    arrived = {message.to: message for message in smtp_server.wait_for(len(READERS))}
    addresses = [service.normalise_email(address, settings) for address, _, _ in READERS]
    assert sorted(arrived) == sorted(wire_address(stored) for stored in addresses)
    confirmations = [arrived[wire_address(stored)] for stored in addresses]
    parsed = mailparser([m.data for m in confirmations])
    for stored, message, node in zip(addresses, confirmations, parsed, strict=True):
        check_message(
            message.data,
            node,
            to=stored,
            name="",  # nothing typed goes into mail to an unproven address (issue 12)
            subject="Confirm your subscription to GET THE SIGNAL",
            sender="signal@example.org",
        )
        assert "https://news.example.org/confirm/" in node["text"]
    # the welcome mail carries List-Unsubscribe too
    smtp_server.clear()
    zoe = service.normalise_email("zoë@exämple.org", settings)
    reader = service.ConfirmOutcome("confirmed", service_id(zoe), zoe, "Zoë Ünïcode", "")
    with session_scope() as session:
        service.queue_welcome(session, settings, reader)
    [welcome] = smtp_server.wait_for(1)
    [node] = mailparser([welcome.data])
    check_message(welcome.data, node, to=zoe, name="Zoë Ünïcode", subject="Welcome to GET THE SIGNAL",
                  sender="signal@example.org")  # fmt: skip
    assert node["list"]["unsubscribe"]["url"].startswith("https://news.example.org/unsubscribe/")
    # a test send of an issue to an international address
    smtp_server.clear()
    make_issue(settings, 1, status="draft", subject=SUBJECT)
    send_test(settings, 1, ["ivan@пример.рф"])
    [test] = smtp_server.wait_for(1)
    [node] = mailparser([test.data])
    assert unicode_address(node["to"][0]["address"]) == "ivan@пример.рф"
    assert SUBJECT in node["subject"]
    check_lines(test.data)


def service_id(address: str) -> int:
    from sqlmodel import select

    from newsletter.db import session_scope
    from newsletter.models import Subscriber

    with session_scope() as session:
        return session.exec(select(Subscriber.id).where(Subscriber.email == address)).one()


@pytest.mark.parametrize(
    "base_url, sender",
    [
        ("https://news.example.org", "signal@example.org"),
        ("https://nachrichten.bücher.example", "signal@bücher.example"),  # IDN everywhere
        ("https://news.example.org", "zoë@exämple.org"),  # a UTF-8 From address
    ],
)
def test_list_headers_stay_ascii_for_any_configured_domain(make_settings, base_url, sender):
    settings = make_settings(base_url=base_url, mail_from=f"Signal <{sender}>")
    token = "12.AbC-_x"
    value = list_unsubscribe(settings, f"{base_url}/unsubscribe/{token}")
    assert value.isascii()
    [node] = mailparser(
        [
            OutgoingMessage(
                sender=settings.mail_from,
                to="reader@example.org",
                subject="s",
                text="t",
                headers={"List-Unsubscribe": value, "List-Id": list_id(settings)},
            ).as_bytes()
        ]
    )
    assert node["list"]["unsubscribe"]["url"] == ascii_uri(f"{base_url}/unsubscribe/{token}")
    assert node["list"]["unsubscribe"]["mail"].split("?")[0] == ascii_uri(f"mailto:{sender}")[7:]
    assert node["list"]["id"] == {"id": f"get-the-signal.{host_of(base_url)}", "name": "Signal"}


def test_structured_headers_refuse_encoded_words_and_line_breaks():
    assert encode_structured("List-Unsubscribe", "<https://bücher.example/u/1>") == (
        "<https://xn--bcher-kva.example/u/1>"
    )
    with pytest.raises(ValueError, match="ASCII"):
        encode_structured("List-Id", "Zoë <list.example.org>")
    with pytest.raises(ValueError):
        encode_structured("List-Unsubscribe", "<https://x.example/u>\r\nBcc: victim@example.org")


def test_only_a_utf8_local_part_needs_smtputf8():
    def message(to, sender="Signal <signal@example.org>"):
        return OutgoingMessage(sender=sender, to=to, subject="s", text="t")

    assert not needs_smtputf8(message("ann@example.org"))
    assert not needs_smtputf8(message("juergen@bücher.example"))
    assert not needs_smtputf8(message("ann@example.org", "Signal <signal@bücher.example>"))
    assert needs_smtputf8(message("zoë@example.org"))
    assert needs_smtputf8(message("ann@example.org", "Signal <zoë@example.org>"))
    raw = message("juergen@bücher.example").as_bytes()
    assert b"To: juergen@xn--bcher-kva.example" in raw and raw.isascii()


@pytest.mark.parametrize("to", ["ann@example.org", "zoë@exämple.org"])  # the 7-bit and the SMTPUTF8 path
def test_quoted_printable_and_base64_lines_are_at_most_76_characters(to):
    text = "\n".join(
        [
            "Grüße aus Köln — " * 20,
            "日本語のテキスト、" * 30,
            "Ελληνικά κείμενα " * 25,
            "x" * 75 + "=",
            "trailing spaces   " + " " * 80,
            ".starts with a dot " * 10,
        ]
    )
    html = "<p>" + "<td style='padding:0'>Здравствуйте, мир — 你好</td>" * 200 + "</p>"
    raw = OutgoingMessage(
        sender="Signal <signal@example.org>", to=to, subject="s", text=text, html=html
    ).as_bytes()
    check_lines(raw)
    [node] = mailparser([raw])
    assert lines(node["text"]) == lines(text) and node["html"].strip() == html
