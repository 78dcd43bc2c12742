"""ESP adapters against local HTTP servers that check each request the way
the provider documents it (path, auth, body shape, batch limits) and answer
the way the provider does, including partial failures and 429s."""

from __future__ import annotations

import base64
import email
import json
from email.policy import default as default_policy
from urllib.parse import parse_qs

import pytest

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports import TransportError, make_transport
from tests.helpers import FakeProvider, start_peers


@pytest.fixture
def provider():
    """Start fake ESP APIs: ``provider(answer)``; all are stopped after the test."""
    yield from start_peers(FakeProvider)


def messages(n, *, domain="example.org", personal=True):
    out = []
    for i in range(n):
        unsub = f"https://news.example.org/unsubscribe/{i}.tok{i}"
        prefs = f"https://news.example.org/preferences/{i}.tok{i}"
        out.append(
            OutgoingMessage(
                sender="GET THE SIGNAL <signal@example.org>",
                to=f"reader{i}@{domain}",
                to_name=f"Reader {i}" if i % 2 else "",
                subject="Issue 045: AI Ethics",
                text=f"Hello\nUnsubscribe: {unsub}\nPreferences: {prefs}\n",
                html=f'<p>Hello</p><a href="{unsub}">Unsubscribe</a> <a href="{prefs}">Preferences</a>',
                headers={
                    "List-Unsubscribe": f"<{unsub}>, <mailto:signal@example.org?subject=unsubscribe%20{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "List-Id": "GET THE SIGNAL <gts.example.org>",
                },
                message_id=f"<m{i}@example.org>",
                delivery_id=i + 1,
                metadata={"delivery_id": str(i + 1), "issue": "45"},
                merge_fields={
                    "unsubscribe": unsub,
                    "preferences": prefs,
                    "list_unsubscribe": f"<{unsub}>, <mailto:signal@example.org?subject=unsubscribe%20{i}>",
                }
                if personal
                else {},
            )
        )
    return out


# --- Postmark ---------------------------------------------------------------------


def postmark_answer(inactive=(), limit_first=0):
    calls = {"n": 0}

    def answer(request):
        calls["n"] += 1
        assert request["path"] == "/email/batch", request["path"]
        assert request["headers"].get("X-Postmark-Server-Token") == "pm-token"
        assert request["headers"].get("Accept") == "application/json"
        assert request["headers"].get("Content-Type", "").startswith("application/json")
        if calls["n"] <= limit_first:
            return 429, {}, {"ErrorCode": 429, "Message": "Rate limit exceeded"}
        batch = json.loads(request["body"])
        assert isinstance(batch, list) and 1 <= len(batch) <= 500, (
            "Postmark batches hold at most 500 messages"
        )
        out = []
        for entry in batch:
            assert {
                "From",
                "To",
                "Subject",
                "TextBody",
                "HtmlBody",
                "MessageStream",
                "Headers",
            } <= entry.keys()
            assert entry["MessageStream"] == "newsletter"
            assert all(set(h) == {"Name", "Value"} for h in entry["Headers"])
            if any(addr in entry["To"] for addr in inactive):
                out.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to a recipient that has been marked as inactive. Found inactive addresses: x. "
                        "Inactive recipients are ones that have generated a hard bounce or a spam complaint.",
                    }
                )
            else:
                out.append(
                    {
                        "To": entry["To"],
                        "SubmittedAt": "2026-01-05T08:00:00Z",
                        "MessageID": f"pm-{len(out)}",
                        "ErrorCode": 0,
                        "Message": "OK",
                    }
                )
        return 200, {}, out

    return answer


def test_postmark_batch_with_per_message_error_codes(provider):
    server = provider(postmark_answer(inactive=("reader2@",)))
    transport = make_transport(f"postmark://pm-token@default?stream=newsletter&endpoint={server.url}")
    assert transport.max_batch == 500
    results = transport.send(messages(600))
    transport.close()
    assert not server.errors
    assert [len(server.json(i)) for i in range(len(server.requests))] == [500, 100]
    assert [r.status for r in results[:4]] == ["sent", "sent", "permanent", "sent"]
    assert "inactive" in results[2].error
    assert results[0].provider_message_id == "pm-0"
    first = server.json(0)[1]
    assert first["To"] == '"Reader 1" <reader1@example.org>'
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["Metadata"] == {"delivery_id": "2", "issue": "45"}
    assert first["TrackOpens"] is False and first["TrackLinks"] == "None"


def test_postmark_429_is_a_whole_batch_transient_error(provider):
    server = provider(postmark_answer(limit_first=1))
    transport = make_transport(f"postmark://pm-token@default?stream=newsletter&endpoint={server.url}")
    with pytest.raises(TransportError) as info:
        transport.send(messages(3))
    assert "429" in str(info.value) and not info.value.fatal
    assert [r.status for r in transport.send(messages(3))] == ["sent"] * 3


def test_postmark_bad_token_is_fatal(provider):
    server = provider(lambda request: (401, {}, {"ErrorCode": 10, "Message": "Bad or missing API token"}))
    transport = make_transport(f"postmark://wrong@default?endpoint={server.url}")
    with pytest.raises(TransportError) as info:
        transport.send(messages(1))
    assert info.value.fatal


# --- SendGrid -------------------------------------------------------------------------


def sendgrid_answer(bad_address=None, retry_once=False):
    state = {"n": 0}

    def answer(request):
        state["n"] += 1
        assert request["path"] == "/v3/mail/send"
        assert request["headers"].get("Authorization") == "Bearer sg-key"
        if retry_once and state["n"] == 1:
            return (
                429,
                {"X-RateLimit-Reset": "0", "Retry-After": "1"},
                {"errors": [{"message": "too many requests"}]},
            )
        body = json.loads(request["body"])
        personalizations = body["personalizations"]
        assert 1 <= len(personalizations) <= 1000, "SendGrid allows at most 1000 personalizations"
        assert body["from"] == {"email": "signal@example.org", "name": "GET THE SIGNAL"}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"], (
            "text/plain must come first"
        )
        for n, p in enumerate(personalizations):
            assert len(p["to"]) == 1 and "email" in p["to"][0]
            assert len(json.dumps(p.get("substitutions", {}))) < 10000
            if bad_address and p["to"][0]["email"] == bad_address:
                return (
                    400,
                    {},
                    {
                        "errors": [
                            {
                                "message": "Does not contain a valid address.",
                                "field": f"personalizations.{n}.to.0.email",
                                "help": None,
                            }
                        ]
                    },
                )
        return 202, {"X-Message-Id": f"sg-{state['n']}"}, b""

    return answer


def expand_sendgrid(body):
    """What SendGrid delivers: content with each personalization's substitutions applied."""
    out = {}
    for p in body["personalizations"]:
        text = body["content"][0]["value"]
        html = body["content"][1]["value"]
        for tag, value in p.get("substitutions", {}).items():
            text, html = text.replace(tag, value), html.replace(tag, value)
        headers = {**body.get("headers", {}), **p.get("headers", {})}
        out[p["to"][0]["email"]] = (text, html, headers, p["custom_args"])
    return out


def test_sendgrid_one_body_many_personalizations_with_substitutions(provider):
    server = provider(sendgrid_answer())
    transport = make_transport(f"sendgrid://sg-key@default?endpoint={server.url}")
    batch = messages(25)
    results = transport.send(batch)
    assert not server.errors
    assert len(server.requests) == 1, "one body serves every recipient"
    assert {r.status for r in results} == {"sent"} and results[0].provider_message_id == "sg-1"
    delivered = expand_sendgrid(server.json())
    for message in batch:
        text, html, headers, custom = delivered[message.to]
        assert text == message.text and html == message.html
        assert headers["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
        assert custom["delivery_id"] == str(message.delivery_id)
    body = server.json()
    assert body["tracking_settings"]["click_tracking"]["enable"] is False


def test_sendgrid_refused_personalization_is_rejected_and_the_rest_sent(provider):
    server = provider(sendgrid_answer(bad_address="reader3@example.org"))
    transport = make_transport(f"sendgrid://sg-key@default?endpoint={server.url}")
    results = transport.send(messages(5))
    assert [r.status for r in results] == ["sent", "sent", "sent", "rejected", "sent"]
    assert len(server.requests) == 2 and len(server.json(1)["personalizations"]) == 4


def test_sendgrid_429_carries_retry_after(provider):
    server = provider(sendgrid_answer(retry_once=True))
    transport = make_transport(f"sendgrid://sg-key@default?endpoint={server.url}")
    with pytest.raises(TransportError) as info:
        transport.send(messages(2))
    assert info.value.retry_after == 1.0
    assert [r.status for r in transport.send(messages(2))] == ["sent", "sent"]


# --- Mailgun ----------------------------------------------------------------------------


def mailgun_answer(domain="mg.example.org"):
    def answer(request):
        assert request["path"] == f"/v3/{domain}/messages"
        auth = request["headers"].get("Authorization", "")
        assert auth == "Basic " + base64.b64encode(b"api:mg-key").decode(), "basic auth with user 'api'"
        form = parse_qs(request["body"].decode(), keep_blank_values=True)
        recipients = form["to"]
        assert 1 <= len(recipients) <= 1000, "Mailgun batches hold at most 1000 recipients"
        variables = json.loads(form["recipient-variables"][0])
        for to in recipients:
            address = email.utils.parseaddr(to)[1]
            assert address in variables, "every recipient needs recipient-variables"
        assert form["o:tracking"] == ["no"]
        return 200, {}, {"id": "<20260105.1@mg.example.org>", "message": "Queued. Thank you."}

    return answer


def expand_mailgun(form):
    variables = json.loads(form["recipient-variables"][0])
    out = {}
    for to in form["to"]:
        address = email.utils.parseaddr(to)[1]
        values = variables[address]

        def fill(value, values=values):
            for key, val in values.items():
                value = value.replace(f"%recipient.{key}%", str(val))
            return value

        headers = {k[2:]: fill(v[0]) for k, v in form.items() if k.startswith("h:")}
        out[address] = (fill(form["text"][0]), fill(form["html"][0]), headers, values)
    return out


def test_mailgun_batch_with_recipient_variables(provider):
    server = provider(mailgun_answer())
    transport = make_transport(f"mailgun://mg-key@mg.example.org?endpoint={server.url}")
    batch = messages(12)
    results = transport.send(batch)
    assert not server.errors
    assert len(server.requests) == 1
    assert {r.status for r in results} == {"sent"}
    assert results[0].provider_message_id == "20260105.1@mg.example.org"
    form = parse_qs(server.requests[0]["body"].decode())
    delivered = expand_mailgun(form)
    for message in batch:
        text, html, headers, values = delivered[message.to]
        assert (text, html) == (message.text, message.html)
        assert headers["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
        assert values["delivery_id"] == str(message.delivery_id)


def test_mailgun_regions_and_domain():
    from newsletter.delivery.transports.mailgun import HOSTS

    assert (
        make_transport("mailgun://k@mg.example.org?region=eu").endpoint
        == HOSTS["eu"]
        == "https://api.eu.mailgun.net"
    )
    assert make_transport("mailgun://k@mg.example.org").endpoint == "https://api.mailgun.net"
    with pytest.raises(ValueError):
        make_transport("mailgun://k@mg.example.org?region=mars")


def test_mailgun_groups_split_when_bodies_differ_beyond_merge_fields(provider):
    server = provider(mailgun_answer())
    transport = make_transport(f"mailgun://mg-key@mg.example.org?endpoint={server.url}")
    batch = messages(4)
    batch[1].html += "<p>only for reader 1</p>"
    results = transport.send(batch)
    assert {r.status for r in results} == {"sent"} and len(server.requests) == 2
    delivered = {}
    for request in server.requests:
        delivered.update(expand_mailgun(parse_qs(request["body"].decode())))
    assert all(delivered[m.to][1] == m.html for m in batch)


# --- Amazon SES v2 ----------------------------------------------------------------------


def ses_answer(endpoint_holder, rejected=(), throttle_first=0):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    state = {"n": 0}

    def answer(request):
        state["n"] += 1
        assert request["path"] == "/v2/email/outbound-emails"
        headers = {k.lower(): v for k, v in request["headers"].items()}
        auth = headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
        scope = auth.split("Credential=")[1].split(",")[0]
        assert scope.split("/")[2:] == ["eu-west-1", "ses", "aws4_request"], scope
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "host" in signed and "x-amz-date" in signed
        # recompute the signature with botocore from what arrived
        check = AWSRequest(
            method="POST",
            url=endpoint_holder["url"] + request["path"],
            data=request["body"],
            headers={name: headers[name] for name in signed},
        )
        check.context["timestamp"] = headers["x-amz-date"]
        signer = SigV4Auth(Credentials("AKIDTEST", "secret/KEY+1"), "ses", "eu-west-1")
        canonical = signer.canonical_request(check)
        expected = signer.signature(signer.string_to_sign(check, canonical), check)
        assert auth.endswith(f"Signature={expected}"), "SigV4 signature does not verify"
        body = json.loads(request["body"])
        assert set(body) >= {"FromEmailAddress", "Destination", "Content"}
        raw = base64.b64decode(body["Content"]["Raw"]["Data"])
        parsed = email.message_from_bytes(raw, policy=default_policy)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        to = body["Destination"]["ToAddresses"][0]
        if state["n"] <= throttle_first:
            return 429, {"x-amzn-ErrorType": "TooManyRequestsException:"}, {"message": "Too Many Requests"}
        if to in rejected:
            return (
                400,
                {"x-amzn-ErrorType": "MessageRejected:"},
                {"message": "Email address is not verified."},
            )
        return 200, {}, {"MessageId": f"ses-{state['n']}"}

    return answer


def test_ses_v2_raw_send_signed_with_sigv4_and_per_entry_status(provider):
    holder = {}
    server = provider(ses_answer(holder, rejected=("reader1@example.org",), throttle_first=1))
    holder["url"] = server.url
    transport = make_transport(f"ses://AKIDTEST:secret%2FKEY%2B1@eu-west-1?endpoint={server.url}")
    results = transport.send(messages(3))
    assert not server.errors, server.errors
    assert [r.status for r in results] == ["transient", "rejected", "sent"]
    assert results[0].retry_after and "TooManyRequests" in results[0].error
    assert results[2].provider_message_id.startswith("ses-")
    assert make_transport("ses://A:B@us-east-2").endpoint == "https://email.us-east-2.amazonaws.com"


def test_ses_account_refusal_is_fatal(provider):
    server = provider(
        lambda request: (403, {"x-amzn-ErrorType": "AccountSuspendedException:"}, {"message": "suspended"})
    )
    transport = make_transport(f"ses://AKIDTEST:secret@eu-west-1?endpoint={server.url}")
    with pytest.raises(TransportError) as info:
        transport.send(messages(2))
    assert info.value.fatal


# --- Resend ---------------------------------------------------------------------------------


def resend_answer(invalid=(), throttle_first=0):
    state = {"n": 0}

    def answer(request):
        state["n"] += 1
        assert request["path"] == "/emails/batch"
        assert request["headers"].get("Authorization") == "Bearer re-key"
        if state["n"] <= throttle_first:
            return (
                429,
                {"retry-after": "2"},
                {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."},
            )
        batch = json.loads(request["body"])
        assert isinstance(batch, list) and 1 <= len(batch) <= 100, "Resend batches hold at most 100 emails"
        data, errors = [], []
        for index, entry in enumerate(batch):
            assert {"from", "to", "subject", "html", "text", "headers"} <= entry.keys()
            assert isinstance(entry["to"], list)
            if any(addr in entry["to"][0] for addr in invalid):
                assert request["headers"].get("x-batch-validation") == "permissive"
                errors.append({"index": index, "message": "Invalid `to` field."})
            else:
                data.append({"id": f"re-{state['n']}-{index}"})
        return 200, {}, {"data": data, **({"errors": errors} if errors else {})}

    return answer


def test_resend_batches_of_100_with_permissive_partial_failure(provider):
    server = provider(resend_answer(invalid=("reader5@",)))
    transport = make_transport(f"resend://re-key@default?endpoint={server.url}")
    assert transport.max_batch == 100
    results = transport.send(messages(150))
    assert not server.errors
    assert [len(server.json(i)) for i in range(2)] == [100, 50]
    assert results[5].status == "rejected" and "Invalid" in results[5].error
    assert results[6].provider_message_id == "re-1-6" and results[4].provider_message_id == "re-1-4"
    assert sum(r.ok for r in results) == 149
    assert server.json(0)[0]["tags"] == [
        {"name": "delivery_id", "value": "1"},
        {"name": "issue", "value": "45"},
    ]


def test_resend_429_retry_after(provider):
    server = provider(resend_answer(throttle_first=1))
    transport = make_transport(f"resend://re-key@default?endpoint={server.url}")
    with pytest.raises(TransportError) as info:
        transport.send(messages(1))
    assert info.value.retry_after == 2.0


def test_unreachable_endpoint_is_transient():
    transport = make_transport("resend://re-key@default?endpoint=http://127.0.0.1:9&timeout=2")
    with pytest.raises(TransportError) as info:
        transport.send(messages(1))
    assert not info.value.fatal
