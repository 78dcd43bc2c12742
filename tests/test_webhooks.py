"""Provider webhooks, signed in the test exactly as each provider signs them
(keys generated here), with the accepted and the refused paths. A refused
request changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import func, select

from newsletter import clock, db
from newsletter.models import Event, Subscriber, Suppression, WebhookReplay
from newsletter.suppression import is_suppressed
from tests.feedback_fixtures import make_delivery, make_issue, make_subscriber, status_of

pytestmark = pytest.mark.usefixtures("engine")  # the process engine on this test's database

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SES_TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc123.pem"


@pytest.fixture(autouse=True)
def frozen():
    clock.set(NOW)


def snapshot():
    with db.session_scope() as s:
        return (
            tuple(s.exec(select(Subscriber.email, Subscriber.status).order_by(Subscriber.email)).all()),
            s.exec(select(func.count(Suppression.id))).one(),
            s.exec(select(func.count(Event.id))).one(),
            s.exec(select(func.count(WebhookReplay.id))).one(),
        )


def events():
    with db.session_scope() as s:
        return [
            (e.kind, e.provider, e.delivery_id, e.issue_id) for e in s.exec(select(Event).order_by(Event.id))
        ]


@pytest.fixture
def people():
    """Three readers who got issue 1, each with the id the provider gave us."""
    issue = make_issue(1)
    ids = {}
    for n, email in enumerate(["ann@example.org", "bob@example.org", "cy@example.org"]):
        sid = make_subscriber(email)
        ids[email] = make_delivery(issue, sid, provider_message_id=f"msg-{n}")
    return {"issue": issue, "deliveries": ids}


# --- Postmark: basic auth in the webhook URL --------------------------------------


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def postmark(make_app):
    app = make_app(
        webhook_secrets={"postmark_webhook_user": "pm-hook", "postmark_webhook_password": "s3cret-pw"}
    )
    return app.test_client()


def pm_bounce(kind="HardBounce", email="ann@example.org", message_id="msg-0", record_id=42):
    return {
        "RecordType": "Bounce",
        "ID": record_id,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": message_id,
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 unknown user",
        "Email": email,
        "From": "signal@example.org",
        "BouncedAt": "2026-03-02T07:59:00Z",
        "Inactive": True,
        "MessageStream": "broadcast",
    }


def test_postmark_hard_soft_and_complaint_accepted(postmark, people):
    r = postmark.post("/webhooks/postmark", json=pm_bounce(), headers=basic("pm-hook", "s3cret-pw"))
    assert r.status_code == 200, r.json
    assert r.json["suppressed"] == 1
    assert status_of("ann@example.org") == "bounced"
    r = postmark.post(
        "/webhooks/postmark",
        json=pm_bounce("Transient", "bob@example.org", "msg-1", 43),
        headers=basic("pm-hook", "s3cret-pw"),
    )
    assert r.status_code == 200 and r.json["suppressed"] == 0
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": 44,
        "Type": "SpamComplaint",
        "TypeCode": 100001,
        "MessageID": "msg-2",
        "Email": "cy@example.org",
        "BouncedAt": "2026-03-02T08:00:00Z",
    }
    r = postmark.post("/webhooks/postmark", json=complaint, headers=basic("pm-hook", "s3cret-pw"))
    assert r.status_code == 200
    assert status_of("cy@example.org") == "complained"
    d = people["deliveries"]
    assert events() == [
        ("bounce_hard", "postmark", d["ann@example.org"], people["issue"]),
        ("bounce_soft", "postmark", d["bob@example.org"], people["issue"]),
        ("complaint", "postmark", d["cy@example.org"], people["issue"]),
    ]
    # an auto-reply is verified but is not a bounce
    r = postmark.post(
        "/webhooks/postmark",
        json=pm_bounce("AutoResponder", record_id=45),
        headers=basic("pm-hook", "s3cret-pw"),
    )
    assert r.status_code == 200 and r.json["ignored"] == 1 and len(events()) == 3


def test_postmark_refuses_missing_wrong_and_replayed_credentials(postmark, people, make_app):
    before = snapshot()
    r = postmark.post("/webhooks/postmark", json=pm_bounce())
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    assert (
        postmark.post("/webhooks/postmark", json=pm_bounce(), headers=basic("pm-hook", "wrong")).status_code
        == 403
    )
    assert (
        postmark.post("/webhooks/postmark", json=pm_bounce(), headers=basic("x", "s3cret-pw")).status_code
        == 403
    )
    assert (
        postmark.post(
            "/webhooks/postmark", json=pm_bounce(), headers={"Authorization": "Basic !!!"}
        ).status_code
        == 401
    )
    # not configured: refused, whatever is sent
    unconfigured = make_app().test_client()
    assert unconfigured.post("/webhooks/postmark", json=pm_bounce(), headers=basic("", "")).status_code == 403
    assert snapshot() == before
    assert (
        postmark.post(
            "/webhooks/postmark", json=pm_bounce(), headers=basic("pm-hook", "s3cret-pw")
        ).status_code
        == 200
    )
    after = snapshot()
    assert (
        postmark.post(
            "/webhooks/postmark", json=pm_bounce(), headers=basic("pm-hook", "s3cret-pw")
        ).status_code
        == 403
    )
    assert snapshot() == after


# --- SendGrid: ECDSA P-256 over timestamp + raw body --------------------------------


@pytest.fixture
def sendgrid_key():
    return ec.generate_private_key(ec.SECP256R1())


def sg_public(key) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sg_sign(key, body: bytes, timestamp: str) -> dict:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


@pytest.fixture
def sendgrid(make_app, sendgrid_key):
    return make_app(webhook_secrets={"sendgrid_webhook_public_key": sg_public(sendgrid_key)}).test_client()


def sg_events():
    base = {"timestamp": int(NOW.timestamp())}
    events = [
        {
            **base,
            "event": "bounce",
            "type": "bounce",
            "email": "ann@example.org",
            "status": "5.1.1",
            "reason": "550 5.1.1 user unknown",
            "sg_message_id": "msg-0.filterdrecv-5645d9c87f-78xgx-1-5E3A5.0",
        },
        {
            **base,
            "event": "bounce",
            "type": "blocked",
            "email": "bob@example.org",
            "status": "4.0.0",
            "reason": "blocked",
            "sg_message_id": "msg-1.filter0001.16648.5515E0B88.0",
        },
        {**base, "event": "spamreport", "email": "cy@example.org", "sg_message_id": "msg-2.filter0002.1.0"},
        {**base, "event": "delivered", "email": "cy@example.org", "sg_message_id": "msg-2.filter0002.1.0"},
        {**base, "event": "dropped", "email": "dan@example.org", "reason": "Bounced Address"},
    ]
    return [
        {**event, "sg_event_id": f"ev-{n}"} for n, event in enumerate(events)
    ]  # unique, as SendGrid's are


def test_sendgrid_signed_batch_accepted(sendgrid, sendgrid_key, people):
    body = json.dumps(sg_events()).encode()
    r = sendgrid.post(
        "/webhooks/sendgrid", data=body, headers=sg_sign(sendgrid_key, body, str(int(NOW.timestamp())))
    )
    assert r.status_code == 200, r.json
    assert (r.json["accepted"], r.json["ignored"]) == (4, 1)
    assert status_of("ann@example.org") == "bounced"
    assert status_of("bob@example.org") == "active"
    assert status_of("cy@example.org") == "complained"
    with db.session_scope() as s:
        assert is_suppressed(s, "dan@example.org")  # SendGrid had dropped a known-bad address
    kinds = [e[0] for e in events()]
    assert kinds == ["bounce_hard", "bounce_soft", "complaint", "bounce_hard"]


def test_sendgrid_refuses_forged_tampered_unsigned_stale_and_replayed(sendgrid, sendgrid_key, people):
    before = snapshot()
    body = json.dumps(sg_events()).encode()
    stamp = str(int(NOW.timestamp()))
    headers = sg_sign(sendgrid_key, body, stamp)
    # the body changed after signing
    tampered = body.replace(b"ann@example.org", b"eve@example.org")
    assert sendgrid.post("/webhooks/sendgrid", data=tampered, headers=headers).status_code == 403
    # the timestamp changed after signing
    moved = dict(headers, **{"X-Twilio-Email-Event-Webhook-Timestamp": str(int(stamp) + 1)})
    assert sendgrid.post("/webhooks/sendgrid", data=body, headers=moved).status_code == 403
    # signed by someone else's key
    other = sg_sign(ec.generate_private_key(ec.SECP256R1()), body, stamp)
    assert sendgrid.post("/webhooks/sendgrid", data=body, headers=other).status_code == 403
    # unsigned
    assert (
        sendgrid.post(
            "/webhooks/sendgrid", data=body, headers={"Content-Type": "application/json"}
        ).status_code
        == 401
    )
    # genuinely signed, but ten minutes old
    old = str(int((NOW - timedelta(minutes=10)).timestamp()))
    assert (
        sendgrid.post("/webhooks/sendgrid", data=body, headers=sg_sign(sendgrid_key, body, old)).status_code
        == 403
    )
    assert snapshot() == before
    assert sendgrid.post("/webhooks/sendgrid", data=body, headers=headers).status_code == 200
    after = snapshot()
    assert sendgrid.post("/webhooks/sendgrid", data=body, headers=headers).status_code == 403  # replay
    assert snapshot() == after


# --- Mailgun: HMAC-SHA256 over timestamp + token ---------------------------------------

MG_KEY = "key-" + "7" * 32


def mg_payload(event, key=MG_KEY, timestamp=None, token=None):
    timestamp = timestamp or str(int(NOW.timestamp()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def mg_failed(severity, email, message_id):
    return {
        "event": "failed",
        "severity": severity,
        "recipient": email,
        "reason": "bounce",
        "delivery-status": {
            "code": 550 if severity == "permanent" else 452,
            "message": "no such user",
            "description": "mailbox unavailable",
        },
        "message": {"headers": {"message-id": message_id, "to": email}},
    }


@pytest.fixture
def mailgun(make_app):
    return make_app(webhook_secrets={"mailgun_webhook_signing_key": MG_KEY}).test_client()


def test_mailgun_signed_events_accepted(mailgun, make_app):
    issue = make_issue(1)
    ids = {
        e: make_delivery(issue, make_subscriber(e), provider_message_id=f"<2026.{n}@mg.example.org>")
        for n, e in enumerate(["ann@example.org", "bob@example.org", "cy@example.org"])
    }
    for event in (
        mg_failed("permanent", "ann@example.org", "2026.0@mg.example.org"),
        mg_failed("temporary", "bob@example.org", "2026.1@mg.example.org"),
        {
            "event": "complained",
            "recipient": "cy@example.org",
            "message": {"headers": {"message-id": "2026.2@mg.example.org"}},
        },
    ):
        r = mailgun.post("/webhooks/mailgun", json=mg_payload(event))
        assert r.status_code == 200, r.json
    assert [status_of(e) for e in ids] == ["bounced", "active", "complained"]
    assert [(k, d) for k, _, d, _ in events()] == [
        ("bounce_hard", ids["ann@example.org"]),
        ("bounce_soft", ids["bob@example.org"]),
        ("complaint", ids["cy@example.org"]),
    ]


def test_mailgun_refuses_forged_stale_unsigned_and_replayed(mailgun, people):
    before = snapshot()
    event = mg_failed("permanent", "ann@example.org", "msg-0")
    forged = mg_payload(event, key="key-guessed")
    assert mailgun.post("/webhooks/mailgun", json=forged).status_code == 403
    stale = mg_payload(event, timestamp=str(int((NOW - timedelta(hours=1)).timestamp())))
    assert mailgun.post("/webhooks/mailgun", json=stale).status_code == 403
    assert mailgun.post("/webhooks/mailgun", json={"event-data": event}).status_code == 401
    good = mg_payload(event)
    altered = json.loads(json.dumps(good))
    altered["signature"]["timestamp"] = str(int(NOW.timestamp()) + 1)
    assert mailgun.post("/webhooks/mailgun", json=altered).status_code == 403
    assert (
        mailgun.post("/webhooks/mailgun", data=b"not json", content_type="application/json").status_code
        == 400
    )
    assert snapshot() == before
    assert mailgun.post("/webhooks/mailgun", json=good).status_code == 200
    after = snapshot()
    assert mailgun.post("/webhooks/mailgun", json=good).status_code == 403  # same token again
    assert snapshot() == after
    assert status_of("ann@example.org") == "bounced"


# --- Amazon SES through SNS: RSA certificate on an SNS host -----------------------------


@pytest.fixture(scope="module")
def sns_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Fetcher:
    """Stands in for HTTPS GET: serves the test certificate, records every URL."""

    def __init__(self, pem):
        self.pem = pem
        self.urls = []

    def __call__(self, url):
        self.urls.append(url)
        if url.endswith(".pem"):
            return self.pem
        return b"<ConfirmSubscriptionResponse/>"


def sns_sign(key, message: dict, version: str = "2") -> dict:
    """Sign as SNS does: 'Name\\nvalue\\n' for the documented fields, in order."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    canonical = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def sns_notification(notification: dict, message_id=None, **extra) -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id or secrets.token_hex(8),
        "TopicArn": SES_TOPIC,
        "Message": json.dumps(notification),
        "Timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        **extra,
    }


def ses_bounce(kind, email, message_id):
    return {
        "notificationType": "Bounce",
        "mail": {"messageId": message_id, "destination": [email]},
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": email, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
        },
    }


@pytest.fixture
def ses(make_app, sns_key):
    app = make_app(webhook_secrets={"ses_sns_topics": f"arn:aws:sns:us-east-1:1:other,{SES_TOPIC}"})
    fetcher = Fetcher(sns_key[1])
    app.extensions["feedback_fetch"] = fetcher
    return app.test_client(), fetcher


def post_sns(client, message):
    kind = message.get("Type", "")
    return client.post(
        "/webhooks/ses",
        data=json.dumps(message),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": kind},
    )


def test_ses_subscription_confirmation(ses, sns_key):
    client, fetcher = ses
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "c1",
        "Token": "abc",
        "TopicArn": SES_TOPIC,
        "Message": "You have chosen to subscribe",
        "SubscribeURL": url,
        "Timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": CERT_URL,
    }
    r = post_sns(client, sns_sign(sns_key[0], message, "1"))
    assert r.status_code == 200 and r.json["confirmed"]
    assert fetcher.urls == [CERT_URL, url]
    # a confirmation pointing anywhere else is not followed
    evil = dict(message, MessageId="c2", SubscribeURL="https://attacker.example/confirm")
    r = post_sns(client, sns_sign(sns_key[0], evil, "1"))
    assert r.status_code == 403 and fetcher.urls == [CERT_URL, url]


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounces_and_complaints_signature_v1_and_v2(ses, sns_key, people, version):
    client, fetcher = ses
    for note in (
        ses_bounce("Permanent", "ann@example.org", "msg-0"),
        ses_bounce("Transient", "bob@example.org", "msg-1"),
        {
            "notificationType": "Complaint",
            "mail": {"messageId": "msg-2"},
            "complaint": {
                "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": "cy@example.org"}],
            },
        },
    ):
        r = post_sns(
            client, sns_sign(sns_key[0], sns_notification(note, Subject="Amazon SES Email Event"), version)
        )
        assert r.status_code == 200, r.json
    assert [status_of(e) for e in ("ann@example.org", "bob@example.org", "cy@example.org")] == [
        "bounced",
        "active",
        "complained",
    ]
    assert [e[0] for e in events()] == ["bounce_hard", "bounce_soft", "complaint"]
    assert fetcher.urls == [CERT_URL]  # fetched once, then cached


def test_ses_refuses_forged_cert_host_before_fetching(ses, sns_key, people):
    client, fetcher = ses
    before = snapshot()
    note = ses_bounce("Permanent", "ann@example.org", "msg-0")
    for host_url in (
        "https://sns.eu-west-1.amazonaws.com.attacker.example/cert.pem",
        "https://attacker.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com@attacker.example/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
    ):
        message = sns_sign(sns_key[0], sns_notification(note, SigningCertURL=host_url))
        assert post_sns(client, message).status_code == 403, host_url
    assert fetcher.urls == []  # refused before any fetch
    assert snapshot() == before


def test_ses_refuses_bad_signature_topic_stale_and_replay(ses, sns_key, people):
    client, _ = ses
    before = snapshot()
    note = ses_bounce("Permanent", "ann@example.org", "msg-0")
    good = sns_sign(sns_key[0], sns_notification(note, message_id="m-1"))
    # Message altered after signing (someone else's address)
    tampered = dict(good, Message=json.dumps(ses_bounce("Permanent", "bob@example.org", "msg-1")))
    assert post_sns(client, tampered).status_code == 403
    # signed with a key that is not the certificate's
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert post_sns(client, sns_sign(other, sns_notification(note))).status_code == 403
    # a topic we do not listen to
    assert (
        post_sns(
            client,
            sns_sign(sns_key[0], sns_notification(note, TopicArn="arn:aws:sns:eu-west-1:999:someone-else")),
        ).status_code
        == 403
    )
    # unsigned
    unsigned = {k: v for k, v in good.items() if k not in ("Signature", "SignatureVersion")}
    assert post_sns(client, unsigned).status_code == 401
    # genuinely signed two hours ago
    old = sns_notification(note, Timestamp=(NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    assert post_sns(client, sns_sign(sns_key[0], old)).status_code == 403
    assert snapshot() == before
    assert post_sns(client, good).status_code == 200
    after = snapshot()
    assert post_sns(client, good).status_code == 403  # same MessageId
    assert snapshot() == after


def test_ses_certificate_fetch_failure_is_a_refusal(make_app, sns_key, people):
    app = make_app(webhook_secrets={"ses_sns_topics": SES_TOPIC})

    def broken(url):
        raise ConnectionError("no route")

    app.extensions["feedback_fetch"] = broken
    before = snapshot()
    message = sns_sign(sns_key[0], sns_notification(ses_bounce("Permanent", "ann@example.org", "msg-0")))
    assert post_sns(app.test_client(), message).status_code == 403
    assert snapshot() == before


# --- Resend: Svix signatures ------------------------------------------------------------

RESEND_KEY = secrets.token_bytes(24)
RESEND_SECRET = "whsec_" + base64.b64encode(RESEND_KEY).decode()


def svix_headers(body: bytes, key: bytes = RESEND_KEY, msg_id=None, timestamp=None) -> dict:
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    timestamp = timestamp or str(int(NOW.timestamp()))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": "v1," + base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }


def resend_event(kind, email, email_id, bounce_type=None):
    data = {"email_id": email_id, "from": "signal@example.org", "to": [email], "subject": "Issue 001"}
    if bounce_type:
        data["bounce"] = {"message": "mailbox does not exist", "subType": "General", "type": bounce_type}
    return json.dumps({"type": kind, "created_at": "2026-03-02T08:00:00.000Z", "data": data}).encode()


@pytest.fixture
def resend(make_app):
    return make_app(webhook_secrets={"resend_webhook_secret": RESEND_SECRET}).test_client()


def test_resend_svix_signed_events_accepted(resend, people):
    for body in (
        resend_event("email.bounced", "ann@example.org", "msg-0", "Permanent"),
        resend_event("email.bounced", "bob@example.org", "msg-1", "Transient"),
        resend_event("email.complained", "cy@example.org", "msg-2"),
        resend_event("email.delivered", "cy@example.org", "msg-2"),
    ):
        r = resend.post("/webhooks/resend", data=body, headers=svix_headers(body))
        assert r.status_code == 200, r.json
    assert [status_of(e) for e in ("ann@example.org", "bob@example.org", "cy@example.org")] == [
        "bounced",
        "active",
        "complained",
    ]
    assert [e[0] for e in events()] == ["bounce_hard", "bounce_soft", "complaint"]


def test_resend_accepts_any_of_rotated_signatures(resend, people):
    body = resend_event("email.bounced", "ann@example.org", "msg-0", "Permanent")
    headers = svix_headers(body)
    old = svix_headers(body, key=secrets.token_bytes(24), msg_id=headers["svix-id"])["svix-signature"]
    headers["svix-signature"] = f"{old} {headers['svix-signature']}"
    assert resend.post("/webhooks/resend", data=body, headers=headers).status_code == 200


def test_resend_refuses_forged_stale_unsigned_and_replayed(resend, people):
    before = snapshot()
    body = resend_event("email.bounced", "ann@example.org", "msg-0", "Permanent")
    headers = svix_headers(body)
    assert (
        resend.post("/webhooks/resend", data=body, headers=svix_headers(body, key=b"guess")).status_code
        == 403
    )
    assert resend.post("/webhooks/resend", data=body + b" ", headers=headers).status_code == 403
    assert (
        resend.post(
            "/webhooks/resend", data=body, headers=dict(headers, **{"svix-id": "msg_other"})
        ).status_code
        == 403
    )
    stale = svix_headers(body, timestamp=str(int((NOW - timedelta(minutes=6)).timestamp())))
    assert resend.post("/webhooks/resend", data=body, headers=stale).status_code == 403
    assert (
        resend.post("/webhooks/resend", data=body, headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    assert snapshot() == before
    assert resend.post("/webhooks/resend", data=body, headers=headers).status_code == 200
    after = snapshot()
    assert resend.post("/webhooks/resend", data=body, headers=headers).status_code == 403
    assert snapshot() == after


# --- shared guards ------------------------------------------------------------------------


def test_oversized_unknown_and_unconfigured(make_app, people):
    client = make_app(
        webhook_max_bytes=1024, webhook_secrets={"mailgun_webhook_signing_key": MG_KEY}
    ).test_client()
    before = snapshot()
    big = mg_payload(
        {"event": "failed", "severity": "permanent", "recipient": "ann@example.org", "padding": "x" * 2000}
    )
    assert client.post("/webhooks/mailgun", json=big).status_code == 413
    assert client.post("/webhooks/nowhere", json={}).status_code == 404
    for provider in ("postmark", "sendgrid", "ses", "resend"):  # no secrets configured: refuse
        assert client.post(f"/webhooks/{provider}", json={"x": 1}).status_code == 403, provider
    assert client.get("/webhooks/mailgun").status_code == 405
    assert snapshot() == before


def test_event_for_unknown_message_falls_back_to_the_address(mailgun):
    sid = make_subscriber("zed@example.org")
    event = mg_failed("permanent", "ZED@example.org", "not-ours@elsewhere")
    assert mailgun.post("/webhooks/mailgun", json=mg_payload(event)).status_code == 200
    with db.session_scope() as s:
        assert s.get(Subscriber, sid).status == "bounced"
    assert events() == [("bounce_hard", "mailgun", None, None)]


def test_old_replay_tokens_are_pruned(mailgun, people):
    from newsletter.feedback.webhooks import prune_replays

    assert (
        mailgun.post(
            "/webhooks/mailgun", json=mg_payload(mg_failed("temporary", "bob@example.org", "msg-1"))
        ).status_code
        == 200
    )
    assert prune_replays() == 0  # still fresh
    clock.advance(timedelta(days=8))
    assert prune_replays() == 1
    with db.session_scope() as s:
        assert s.exec(select(func.count(WebhookReplay.id))).one() == 0


def test_signed_but_malformed_payloads_never_error(
    postmark, sendgrid, sendgrid_key, mailgun, resend, ses, sns_key, people
):
    before = snapshot()
    stamp = str(int(NOW.timestamp()))
    # Postmark: not one record
    assert (
        postmark.post(
            "/webhooks/postmark", json=[pm_bounce()], headers=basic("pm-hook", "s3cret-pw")
        ).status_code
        == 400
    )
    # SendGrid: an object instead of a list; a list of junk (ignored)
    for body, status in ((b"{}", 400), (b'[1, "x", null, {"event": 42}]', 200), (b"\xff\xfe", 400)):
        r = sendgrid.post("/webhooks/sendgrid", data=body, headers=sg_sign(sendgrid_key, body, stamp))
        assert r.status_code == status, body
    # Mailgun: signature of the wrong shape; event-data of the wrong shape (ignored)
    assert mailgun.post("/webhooks/mailgun", json={"signature": "abc"}).status_code == 401
    assert mailgun.post("/webhooks/mailgun", json=mg_payload(["not", "a", "dict"])).status_code == 200
    # Resend: signed non-JSON
    body = b"not json"
    assert resend.post("/webhooks/resend", data=body, headers=svix_headers(body)).status_code == 400
    # SES: a signed notification whose Message is not JSON (ignored); an unknown Type
    client, _ = ses
    assert (
        post_sns(client, sns_sign(sns_key[0], sns_notification({}, Message="plain text"))).status_code == 200
    )
    weird = sns_sign(sns_key[0], sns_notification({}))
    weird["Type"] = "Surprise"
    assert post_sns(client, weird).status_code == 400
    assert snapshot()[:3] == before[:3]  # readers, suppressions and events untouched
    # hostile values are stored short and on one line
    long_detail = {**pm_bounce(), "ID": 77, "Details": "x\r\nInjected: header\r\n" + "y" * 5000}
    assert (
        postmark.post(
            "/webhooks/postmark", json=long_detail, headers=basic("pm-hook", "s3cret-pw")
        ).status_code
        == 200
    )
    with db.session_scope() as s:
        detail = s.exec(select(Event.detail).where(Event.kind == "bounce_hard")).one()
    assert "\n" not in detail and "\r" not in detail and len(detail) <= 300


# --- replays keyed on what was signed (issue 12, item 6) -----------------------------------
# A signature can be rewritten without the key: ECDSA's (r, s) has a twin (r, n - s),
# base64 has slack bits, hex has two cases. None of these may make a replay look new.

P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _twin(signature_b64: str) -> str:
    """The other valid ECDSA signature of the same message: (r, n - s)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    r, s = decode_dss_signature(base64.b64decode(signature_b64))
    return base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()


def _slack(signature_b64: str) -> str:
    """The same bytes, base64-encoded with different unused low bits in the last character."""
    raw = base64.b64decode(signature_b64)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = signature_b64.rstrip("=")
    last = alphabet.index(stripped[-1])
    for flip in range(1, 16):
        variant = stripped[:-1] + alphabet[last ^ flip] + signature_b64[len(stripped) :]
        if variant != signature_b64 and base64.b64decode(variant, validate=True) == raw:
            return variant
    raise AssertionError("no slack bits in this signature")


def test_sendgrid_replays_with_rewritten_signatures_are_refused(sendgrid, sendgrid_key, people):
    body = json.dumps([sg_events()[1]]).encode()  # one soft bounce
    stamp = str(int(NOW.timestamp()))

    def has_slack(signature: str) -> bool:  # a DER length that is a multiple of 3 has no unused bits
        return len(base64.b64decode(signature)) % 3 != 0

    for _ in range(100):  # ECDSA signs with a fresh random k: sign until both forms have slack bits
        headers = sg_sign(sendgrid_key, body, stamp)
        signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
        if has_slack(signature) and has_slack(_twin(signature)):
            break
    assert sendgrid.post("/webhooks/sendgrid", data=body, headers=headers).status_code == 200
    after = snapshot()
    for rewritten in (_twin(signature), _slack(signature), _slack(_twin(signature))):
        assert rewritten != signature
        again = dict(headers, **{"X-Twilio-Email-Event-Webhook-Signature": rewritten})
        response = sendgrid.post("/webhooks/sendgrid", data=body, headers=again)
        assert response.status_code == 403 and response.json["message"] == "replayed request"
    assert snapshot() == after and status_of("bob@example.org") == "active"


def test_sendgrid_events_resent_in_a_new_signed_request_count_once(sendgrid, sendgrid_key, people):
    body = json.dumps([sg_events()[1]]).encode()
    first = sendgrid.post(
        "/webhooks/sendgrid", data=body, headers=sg_sign(sendgrid_key, body, str(int(NOW.timestamp())))
    )
    assert first.json["accepted"] == 1
    later = str(int(NOW.timestamp()) + 30)  # the provider's retry: same events, newly signed
    again = sendgrid.post("/webhooks/sendgrid", data=body, headers=sg_sign(sendgrid_key, body, later))
    assert again.status_code == 200 and again.json["duplicates"] == 1 and again.json["accepted"] == 0
    assert [e[0] for e in events()] == ["bounce_soft"]


def test_mailgun_replays_with_rewritten_signatures_or_event_ids_are_refused(mailgun, people):
    event = dict(mg_failed("temporary", "bob@example.org", "msg-1"), id="mg-event-1")
    good = mg_payload(event)
    assert mailgun.post("/webhooks/mailgun", json=good).status_code == 200
    after = snapshot()
    upper = json.loads(json.dumps(good))
    upper["signature"]["signature"] = upper["signature"]["signature"].upper()
    assert mailgun.post("/webhooks/mailgun", json=upper).status_code == 403
    fresh = mg_payload(event)  # a new token, the same event
    answer = mailgun.post("/webhooks/mailgun", json=fresh)
    assert answer.status_code == 200 and answer.json["duplicates"] == 1
    assert snapshot()[:3] == after[:3]


def test_postmark_and_resend_replays_with_rewritten_bodies_or_signatures_are_refused(
    postmark, resend, people
):
    auth = basic("pm-hook", "s3cret-pw")
    bounce = pm_bounce("SoftBounce", "bob@example.org", "msg-1", record_id=77)
    assert postmark.post("/webhooks/postmark", json=bounce, headers=auth).status_code == 200
    spaced = json.dumps(bounce, indent=4).encode()  # the same record, written differently
    assert (
        postmark.post(
            "/webhooks/postmark", data=spaced, headers={**auth, "Content-Type": "application/json"}
        ).status_code
        == 403
    )
    body = resend_event("email.bounced", "cy@example.org", "msg-2", "Transient")
    headers = svix_headers(body)
    assert resend.post("/webhooks/resend", data=body, headers=headers).status_code == 200
    doubled = dict(
        headers,
        **{"svix-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['svix-signature']}"},
    )
    assert resend.post("/webhooks/resend", data=body, headers=doubled).status_code == 403
    assert [e[0] for e in events()] == ["bounce_soft", "bounce_soft"]  # one from each provider
