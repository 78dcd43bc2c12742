"""Issue emails: headers, encoding, injection, DKIM (verified by dkimpy)."""

from __future__ import annotations

import email
from email.policy import default as default_policy
from types import SimpleNamespace

import dkim
import pytest

from newsletter.delivery.dkim import DkimSigner, generate_key
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.messages import build_issue_message
from newsletter.delivery.transports import make_transport
from newsletter.mail_encoding import HeaderInjectionError
from newsletter.rendering.personalise import Personalised


def personalised(subject="Issue 045: AI Ethics and Data 2026", token="7.abc"):
    return Personalised(
        subject=subject,
        html=f'<p>Hello</p><a href="https://news.example.org/unsubscribe/{token}">Unsubscribe</a>',
        text=f"Hello\n\nUnsubscribe: https://news.example.org/unsubscribe/{token}\n",
        unsubscribe_url=f"https://news.example.org/unsubscribe/{token}",
        preferences_url=f"https://news.example.org/preferences/{token}",
    )


def issue(number=45):
    from datetime import UTC, datetime

    return SimpleNamespace(id=3, number=number, frozen_at=datetime(2026, 1, 5, tzinfo=UTC))


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=default_policy)


def test_issue_message_carries_every_bulk_header(make_settings):
    settings = make_settings(
        base_url="https://news.example.org", bounce_return_path="bounces+{token}@example.org"
    )
    delivery = SimpleNamespace(id=7, email="ada@example.org", name="Ada Lovelace")
    message = build_issue_message(settings, personalised(), delivery=delivery, issue=issue())
    parsed = parse(message.as_bytes())
    assert parsed["From"] == "GET THE SIGNAL <signal@example.org>"
    assert parsed["To"] == "Ada Lovelace <ada@example.org>"
    assert parsed["Subject"] == "Issue 045: AI Ethics and Data 2026"
    assert parsed["Date"] and parsed["Message-ID"].startswith("<gts.3.7.")
    assert parsed["List-Id"] == "GET THE SIGNAL <get-the-signal.news.example.org>"
    unsubscribe = parsed["List-Unsubscribe"]
    assert "<https://news.example.org/unsubscribe/7.abc>" in unsubscribe
    assert "<mailto:signal@example.org?subject=unsubscribe%207.abc>" in unsubscribe
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Feedback-ID"] == "issue45:issue:get-the-signal.news.example.org:gts"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert "unsubscribe/7.abc" in parsed.get_body(("plain",)).get_content()
    # VERP: the envelope sender names the delivery through a signed token
    assert message.return_path.startswith("bounces+7.") and message.return_path.endswith("@example.org")


def test_message_id_is_stable_per_delivery_and_unique_across_deliveries(make_settings):
    settings = make_settings()
    one = build_issue_message(
        settings, personalised(), delivery=SimpleNamespace(id=1, email="a@example.org"), issue=issue()
    )
    again = build_issue_message(
        settings, personalised(), delivery=SimpleNamespace(id=1, email="a@example.org"), issue=issue()
    )
    two = build_issue_message(
        settings, personalised(), delivery=SimpleNamespace(id=2, email="b@example.org"), issue=issue()
    )
    assert one.message_id == again.message_id != two.message_id


def test_non_ascii_subject_and_names_are_rfc2047_and_round_trip(make_settings):
    settings = make_settings(mail_from="Zoë’s Signal <signal@example.org>")
    delivery = SimpleNamespace(id=1, email="jose@example.org", name="José Ñúñez, Jr.")
    message = build_issue_message(
        settings, personalised(subject="Grüße — KI & Ethik 2026 ✓" * 3), delivery=delivery, issue=issue()
    )
    raw = message.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert b"=?utf-8?" in head
    parsed = parse(raw)
    assert parsed["Subject"] == "Grüße — KI & Ethik 2026 ✓" * 3
    assert parsed["To"].addresses[0].display_name == "José Ñúñez, Jr."
    assert parsed["From"].addresses[0].display_name == "Zoë’s Signal"
    assert parsed["List-Id"].endswith("<get-the-signal.localhost>")


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "Hi\r\nBcc: victim@example.org"),
        ("subject", "Hi\nBcc: victim@example.org"),
        ("to_name", "Eve\rBcc: victim@example.org"),
        ("to", "eve@example.org\r\nBcc: victim@example.org"),
        ("sender", "S <s@example.org>\nBcc: victim@example.org"),
    ],
)
def test_header_injection_is_impossible(field, value):
    values = dict(sender="S <s@example.org>", to="a@example.org", subject="hello", text="x")
    values[field] = value
    with pytest.raises((HeaderInjectionError, ValueError)):
        OutgoingMessage(**values).as_bytes()


def test_hostile_header_names_and_values_are_refused():
    for headers in ({"X-Evil\r\nBcc": "x"}, {"X-Evil: y": "x"}, {"List-Id": "a\r\n\r\n<body>"}):
        message = OutgoingMessage(
            sender="S <s@example.org>", to="a@example.org", subject="s", text="x", headers=headers
        )
        with pytest.raises(HeaderInjectionError):
            message.as_bytes()


def test_bodies_survive_quoted_printable_exactly():
    text = "Line with trailing space \n.leading dot\n" + "x" * 300 + "\nünïcödé = sign\r\nend"
    html = '<p style="a:b">' + "long " * 100 + "=3D</p>"
    parsed = parse(
        OutgoingMessage(
            sender="S <s@example.org>", to="a@example.org", subject="s", text=text, html=html
        ).as_bytes()
    )
    plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain.rstrip("\n") == text.replace("\r\n", "\n")
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n") == html


@pytest.fixture
def dkim_key(tmp_path):
    path = tmp_path / "dkim.pem"
    record = generate_key(path)
    return path, record.encode()


def test_dkim_signature_verifies_and_covers_the_list_headers(make_settings, dkim_key):
    path, record = dkim_key
    settings = make_settings(dkim_domain="example.org", dkim_selector="gts", dkim_key_file=str(path))
    message = build_issue_message(
        settings,
        personalised(subject="Grüße"),
        delivery=SimpleNamespace(id=9, email="a@example.org", name="Zoë"),
        issue=issue(),
    )
    signed = message.signed_bytes(DkimSigner.from_settings(settings))

    def dns(name, timeout=5):
        assert name == b"gts._domainkey.example.org."
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    signature = parse(signed)["DKIM-Signature"]
    tags = dict(part.strip().split("=", 1) for part in signature.split(";"))
    covered = {h.strip().lower() for h in tags["h"].split(":")}
    for header in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert header in covered
    # tampering with the unsubscribe target breaks the signature
    tampered = signed.replace(b"unsubscribe/7.abc>", b"unsubscribe/8.abc>", 1)
    assert tampered != signed and not dkim.verify(tampered, dnsfunc=dns)
    # adding a second List-Unsubscribe after signing breaks it too (over-signed)
    added = signed.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/>\r\n\r\n", 1)
    assert not dkim.verify(added, dnsfunc=dns)


def test_smtp_transport_signs_with_dkim(make_settings, dkim_key, smtp_server):
    path, record = dkim_key
    settings = make_settings(
        transport=smtp_server.dsn, dkim_domain="example.org", dkim_selector="gts", dkim_key_file=str(path)
    )
    transport = make_transport(settings.transport, settings)
    message = build_issue_message(
        settings, personalised(), delivery=SimpleNamespace(id=1, email="a@example.org"), issue=issue()
    )
    [result] = transport.send([message])
    transport.close()
    assert result.ok
    [received] = smtp_server.wait_for(1)
    assert dkim.verify(
        received.data.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"), dnsfunc=lambda *a, **k: record
    )


# --- DKIM fast path: the same canonical form as dkimpy, verified by dkimpy -----------


def _verify(raw: bytes, record: bytes) -> bool:
    return dkim.verify(raw, dnsfunc=lambda *args, **kwargs: record)


@pytest.mark.parametrize(
    "block",
    [
        b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: hi",
        b"Subject:   lots \t of\t\tspace   \r\nX-Empty:\r\nTo:b@example.org",
        b"Subject: folded\r\n  over\r\n\tthree lines\r\nFrom: x@example.org",
        b"To: one@example.org\r\nTo: two@example.org\r\nFrom: =?utf-8?q?Zo=C3=AB?= <z@example.org>",
        "Subject: Grüße aus Köln\r\nTo: Zoë <zoë@exämple.org>".encode(),
    ],
)
def test_fast_header_canonicalisation_equals_dkimpys(block):
    from dkim.canonicalization import Relaxed

    from newsletter.delivery.dkim import _relaxed, _split_headers

    ours = _split_headers(block)
    theirs = dkim.rfc822_parse(block + b"\r\n\r\n")[0]
    assert [(n, v.rstrip(b"\r\n")) for n, v in theirs] == ours
    assert [_relaxed(n, v) for n, v in ours] == [
        n + b":" + v for n, v in Relaxed.canonicalize_headers(theirs)
    ]


def test_unusual_header_blocks_go_through_dkimpys_parser():
    from newsletter.delivery.dkim import _split_headers

    assert _split_headers(b"Subject: bare\nTo: lf@example.org") is None
    assert _split_headers(b" continuation first\r\nTo: a@example.org") is None
    assert _split_headers(b"No colon here\r\nTo: a@example.org") is None
    assert _split_headers(b"Bad Name: x\r\nTo: a@example.org") is None


@pytest.mark.parametrize(
    "to, name, subject, text, html",
    [
        # non-ASCII name and subject (RFC 2047), non-ASCII bodies, long lines
        ("a@example.org", "Zoë Ünïcödé", "Grüße — 日本語 " * 8, "Grüße\n" * 2000, "<p>日本語</p>" * 5000),
        # a long body with trailing blank lines, dots at line starts, tabs and runs of spaces
        ("b@example.org", "", "plain", ".dot\n\tTab  and   spaces \n" * 3000 + "\n\n\n", None),
        # an internationalised address: the SMTPUTF8 path (email.message), raw UTF-8 headers
        ("zoë@exämple.org", "Zoë", "Grüße", "Hallo\n", "<p>Hallo</p>"),
    ],
)
def test_dkim_verifies_for_non_ascii_and_long_messages(dkim_key, to, name, subject, text, html):
    path, record = dkim_key
    signer = DkimSigner("example.org", "gts", path.read_bytes())
    message = OutgoingMessage(
        sender="Zoë Sender <signal@example.org>",
        to=to,
        to_name=name,
        subject=subject,
        text=text,
        html=html,
        headers={"List-Unsubscribe": "<https://news.example.org/unsubscribe/" + "t" * 120 + ">"},
    )
    signed = message.signed_bytes(signer)
    assert _verify(signed, record)
    # a changed body byte or a changed signed header breaks it
    tampered = signed[:-3] + (b"Y" if signed[-3:-2] == b"X" else b"X") + signed[-2:]
    assert tampered != signed and not _verify(tampered, record)
    assert not _verify(signed.replace(b"unsubscribe/t", b"unsubscribe/u", 1), record)


def test_a_signed_message_in_hand_keeps_one_copy_of_its_bytes(dkim_key):
    """A batch is signed before it is sent: each message keeps its
    DKIM-Signature header, not a second, signed copy of its bytes (25 KB a
    message of a 20 KB issue); the two are joined when it goes out, and
    signing again reuses the header."""
    path, record = dkim_key
    signer = DkimSigner("example.org", "gts", path.read_bytes())
    messages = [
        OutgoingMessage(sender="signal@example.org", to=f"r{n}@example.org", subject="s", text="x" * 20_000)
        for n in range(3)
    ]
    signer.sign_messages(messages)
    for message in messages:
        header = message.dkim_signature
        assert header.startswith(b"DKIM-Signature:") and len(header) < 1_000
        signed = message.signed_bytes(signer)
        assert signed == header + message.as_bytes() and _verify(signed, record)
        signer.sign_messages([message])
        assert message.dkim_signature is header, "signed once; a retry reuses the signature"


def test_dkim_still_signs_messages_dkimpy_has_to_parse(dkim_key):
    path, record = dkim_key
    signer = DkimSigner("example.org", "gts", path.read_bytes())
    raw = b"From: a@example.org\r\nSubject: x\r\n\tfolded\r\nTo: b@example.org\r\n\r\nbody\r\n"
    assert _verify(signer.sign(raw), record)
    twice = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\nTo: c@example.org\r\n\r\nbody\r\n"
    assert _verify(
        signer.sign(twice), record
    )  # a repeated header: h= names it once, the bottom one is signed
    assert not _verify(signer.sign(twice).replace(b"To: c@", b"To: d@"), record)
    odd = b"From: a@example.org\r\nSubject: x\nTo: b@example.org\r\n\r\nbody\r\n"  # a bare LF
    signed = signer.sign(odd)
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(odd)


TEMPLATE_SOURCES = [
    # (static, value, static, value, …) as personalise's split gives them
    ["Hi ", "", ",\n\nTwo lines\n" + "long " * 40 + "\nend ", "", "\n"],
    ["", "", "x" * 200 + "\t\n=3D café\r\n  trailing  \n", "", ""],
    ["<p>", "", "</p>" + "<td style='x'>ünïcode — 漢字</td>" * 30, "", "<a>", "", "</a>"],
    ["short", "", "", "", "tail"],
]
TEMPLATE_VALUES = ["", "Hi Ana,", "Hi Zoë 漢,", "https://news.example.org/unsubscribe/12.abc-_x", "a =20 b  "]


@pytest.mark.parametrize("parts", TEMPLATE_SOURCES)
def test_pre_encoded_templates_decode_to_exactly_the_filled_body(parts):
    """The per-render templates give what encoding the whole filled body gives:
    quoted-printable byte for byte, base64 decoding to the same bytes with no
    line over 76 characters."""
    import base64
    import itertools

    from newsletter import mail_encoding as mime

    qp, b64 = mime.QuotedPrintableTemplate(parts), mime.Base64Template(parts)
    slots = len(parts) // 2
    for values in itertools.product(TEMPLATE_VALUES, repeat=slots):
        filled = "".join(p if i % 2 == 0 else values[i // 2] for i, p in enumerate(parts))
        assert qp.encode(list(values)) == mime.encode_qp(filled)
        encoded = b64.encode(list(values))
        lines = encoded.split(b"\r\n")
        assert lines[-1] == b"" and all(0 < len(line) <= 76 for line in lines[:-1])
        assert base64.b64decode(b"".join(lines), validate=True) == filled.encode("utf-8")


def test_quoted_printable_template_refuses_a_value_with_a_line_break():
    from newsletter import mail_encoding as mime

    with pytest.raises(ValueError, match="line break"):
        mime.QuotedPrintableTemplate(["Hi ", "", "\n"]).encode(["Ana\r\nBcc: x@example.org"])


def test_issue_email_built_from_a_frozen_render_carries_its_pre_encoded_bodies(make_settings):
    """personalise() hands MIME assembly pre-encoded bodies; the message parses
    back to exactly the personalised text and HTML."""
    from newsletter.rendering import placeholders
    from newsletter.rendering.personalise import personalise

    nonce = placeholders.new_nonce()
    GREETING = placeholders.marker(nonce, placeholders.GREETING)
    UNSUBSCRIBE_URL = placeholders.marker(nonce, placeholders.UNSUBSCRIBE_URL)
    settings = make_settings(base_url="https://news.example.org")
    render = SimpleNamespace(
        nonce=nonce,
        subject="Issue 045",
        html=f"<p>{GREETING}</p>" + "<p>ünïcode body</p>" * 100 + f'<a href="{UNSUBSCRIBE_URL}">x</a>',
        text=f"{GREETING}\n\n" + "Body line — café\n" * 50 + f"Leave: {UNSUBSCRIBE_URL}\n",
    )
    mine = personalise(render, settings, subscriber_id=9, email="zoe@example.org", name="Zoë <b>")
    assert mine.bodies is not None
    delivery = SimpleNamespace(id=9, email="zoe@example.org", name="Zoë <b>")
    parsed = parse(build_issue_message(settings, mine, delivery=delivery, issue=issue()).as_bytes())
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == mine.text
    assert parsed.get_body(("html",)).get_content() == mine.html
    assert "Zoë &lt;b&gt;" in mine.html and mine.unsubscribe_url in mine.text


def test_an_issue_email_joins_its_text_and_html_only_for_a_transport_that_reads_them(
    make_settings, monkeypatch
):
    """The bytes come from the pre-encoded parts: building them joins no
    body, so a batch in hand holds no joined copy of each reader's HTML. A
    transport that reads the strings (the HTTP APIs) gets the personalised
    ones, joined once."""
    from newsletter.rendering import personalise as personalisation
    from newsletter.rendering import placeholders

    nonce = placeholders.new_nonce()
    unsubscribe = placeholders.marker(nonce, placeholders.UNSUBSCRIBE_URL)
    render = SimpleNamespace(
        nonce=nonce,
        subject="Issue 045",
        html=f'<p>{placeholders.marker(nonce, placeholders.GREETING)}</p><a href="{unsubscribe}">x</a>',
        text=f"Leave: {unsubscribe}\n",
    )
    settings = make_settings(base_url="https://news.example.org")
    joins = []
    fill = personalisation._Split.fill
    monkeypatch.setattr(
        personalisation._Split, "fill", lambda split, values: joins.append(1) or fill(split, values)
    )
    mine = personalisation.personalise(render, settings, subscriber_id=9, name="Zoë")
    message = build_issue_message(
        settings, mine, delivery=SimpleNamespace(id=9, email="zoe@example.org", name="Zoë"), issue=issue()
    )
    parsed = parse(message.as_bytes())
    assert joins == [], "building the bytes joined a body"
    assert message.html == parsed.get_body(("html",)).get_content() and "<p>Hi Zoë,</p>" in message.html
    assert message.text == f"Leave: {mine.unsubscribe_url}\n"
    assert message.html is message.html and len(joins) == 2, "each body is joined once, then kept"
