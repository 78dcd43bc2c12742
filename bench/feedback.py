"""Feedback throughput: verified webhooks, DSN parsing, per-issue outcomes.

Run: .venv/bin/python bench/feedback.py [--deliveries 100000]
(NEWSLETTER_BENCH_DATABASE_URL=postgresql://… to use PostgreSQL; default: a
temporary SQLite file). Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter import clock, db  # noqa: E402
from newsletter.app import create_app  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.feedback.mailbox import process_message  # noqa: E402
from newsletter.feedback.stats import issue_outcomes  # noqa: E402
from newsletter.feedback.verp import verp_address  # noqa: E402
from newsletter.models import Delivery, Issue, Subscriber  # noqa: E402
from newsletter.suppression import email_hash  # noqa: E402

MG_KEY = "key-bench"


def setup(count: int, tmp: Path):
    url = os.environ.get("NEWSLETTER_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
    db.upgrade(url)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        ec_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    settings = load_settings(
        environ={},
        env="testing",
        database_url=url,
        secret_key="b" * 40,
        instance_path=str(tmp / "instance"),
        base_url="http://localhost",
        bounce_return_path="bounces+{token}@example.org",
        webhook_secrets={"mailgun_webhook_signing_key": MG_KEY, "sendgrid_webhook_public_key": public},
    )
    app = create_app(settings)
    now = clock.now()
    engine = db.get_engine()
    with engine.begin() as conn:
        conn.execute(
            insert(Issue).values(
                id=1,
                number=1,
                title="bench",
                window_start=now - timedelta(days=7),
                window_end=now,
                status="sent",
            )
        )
        for start in range(0, count, 10_000):
            rows = range(start + 1, min(count, start + 10_000) + 1)
            conn.execute(
                insert(Subscriber),
                [
                    {
                        "id": i,
                        "email": f"r{i}@example.org",
                        "email_hash": email_hash(f"r{i}@example.org"),
                        "status": "active",
                        "created_at": now,
                        "updated_at": now,
                        "consent_text": "",
                    }
                    for i in rows
                ],
            )
            conn.execute(
                insert(Delivery),
                [
                    {
                        "id": i,
                        "issue_id": 1,
                        "subscriber_id": i,
                        "email": f"r{i}@example.org",
                        "status": "sent",
                        "provider_message_id": f"pm-{i}",
                        "attempts": 1,
                    }
                    for i in rows
                ],
            )
    return app, settings, ec_key


def bench_mailgun(app, n: int) -> float:
    client = app.test_client()
    started = time.perf_counter()
    for i in range(1, n + 1):
        stamp, token = str(int(clock.now().timestamp())), secrets.token_hex(25)
        sig = hmac.new(MG_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        body = {
            "signature": {"timestamp": stamp, "token": token, "signature": sig},
            "event-data": {
                "event": "failed",
                "severity": "temporary",
                "recipient": f"r{i}@example.org",
                "message": {"headers": {"message-id": f"pm-{i}"}},
            },
        }
        assert client.post("/webhooks/mailgun", json=body).status_code == 200
    return n / (time.perf_counter() - started)


def bench_sendgrid(app, ec_key, n: int, offset: int) -> float:
    events = [
        {
            "event": "bounce",
            "type": "blocked",
            "email": f"r{i}@example.org",
            "sg_message_id": f"pm-{i}.filter1",
            "timestamp": 1,
        }
        for i in range(offset, offset + n)
    ]
    body = json.dumps(events).encode()
    stamp = str(int(clock.now().timestamp()))
    sig = base64.b64encode(ec_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    started = time.perf_counter()
    r = app.test_client().post(
        "/webhooks/sendgrid",
        data=body,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": sig,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )
    assert r.status_code == 200 and r.json["accepted"] == n, r.json
    return time.perf_counter() - started


def bench_dsn(settings, n: int, offset: int) -> float:
    started = time.perf_counter()
    for i in range(offset, offset + n):
        to = verp_address(settings, i)
        raw = DSN.format(to=to, rcpt=f"r{i}@example.org").encode()
        assert process_message(settings, raw) == 1
    return n / (time.perf_counter() - started)


DSN = (
    "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    "--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
    "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, settings, ec_key = setup(args.deliveries, Path(tmp))
        print(f"database: {db.get_engine().dialect.name}, {args.deliveries} deliveries of one issue")
        print(f"mailgun webhook, one signed event per request: {bench_mailgun(app, 500):.0f} requests/s")
        print(
            f"sendgrid webhook, one signed batch of 1000 events: {bench_sendgrid(app, ec_key, 1000, 1001) * 1000:.0f} ms"
        )
        print(
            f"bounce mailbox parsing (flufl.bounce + VERP + policy): {bench_dsn(settings, 500, 3001):.0f} DSNs/s"
        )
        with db.session_scope() as s:
            started = time.perf_counter()
            out = issue_outcomes(s, 1)
            elapsed = time.perf_counter() - started
        print(
            f"issue_outcomes over {out['total']} deliveries: {elapsed * 1000:.0f} ms "
            f"(delivered {out['delivered']}, bounced {out['bounced']})"
        )


if __name__ == "__main__":
    main()
