"""``resend://API_KEY@default``: Resend's batch API.

``POST /emails/batch`` with up to 100 emails, ``Authorization: Bearer``, in
permissive validation mode (``x-batch-validation: permissive``) so one
invalid entry does not sink the other 99: the answer lists the queued ids
in ``data`` (in request order, skipping refused entries) and the refused ones
in ``errors`` with their ``index``. 429 answers carry ``retry-after``.
"""

from __future__ import annotations

import requests

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Probe, SendResult
from newsletter.delivery.transports.http import HttpTransport, whole_request_error


class ResendTransport(HttpTransport):
    name = "resend"
    max_batch = 100
    default_endpoint = "https://api.resend.com"

    probe_path = "/domains"

    def probe(self) -> Probe:
        """A sending-only key may not list domains: Resend answers 401 with
        ``restricted_api_key``, which still proves the key."""
        try:
            response = self.session.get(self.endpoint + self.probe_path, timeout=self.timeout)
        except requests.RequestException as exc:
            return Probe("fail", f"resend: {exc}")
        if response.status_code == 401 and "restricted_api_key" in response.text:
            return Probe("pass", "resend: API key accepted (restricted to sending)")
        if response.status_code != 200:
            return Probe("fail", f"resend: {response.status_code} {' '.join(response.text[:300].split())}")
        domains = [
            d.get("name", "?") + f" ({d.get('status', '?')})" for d in response.json().get("data") or []
        ]
        return Probe("pass", f"resend: API key accepted; domains {', '.join(domains) or 'none'}")

    def __init__(self, key: str, **options):
        super().__init__(**options)
        self.session.headers.update({"Authorization": f"Bearer {key}", "x-batch-validation": "permissive"})

    @staticmethod
    def payload(message: OutgoingMessage) -> dict:
        to = f'"{message.to_name}" <{message.to}>' if message.to_name else message.to
        body = {
            "from": message.sender,
            "to": [to],
            "subject": message.subject,
            "text": message.text,
            "headers": dict(message.headers),
            "tags": [{"name": k, "value": v} for k, v in message.metadata.items()],
        }
        if message.html is not None:
            body["html"] = message.html
        return body

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        response = self.request("POST", "/emails/batch", json=[self.payload(m) for m in messages])
        if response.status_code != 200:
            raise whole_request_error(self.name, response)
        answer = response.json()
        errors = {int(e["index"]): str(e.get("message", "")) for e in answer.get("errors") or []}
        ids = iter(answer.get("data") or [])
        results = []
        for index in range(len(messages)):
            if index in errors:
                results.append(SendResult("rejected", error=f"resend: {errors[index]}"))
                continue
            entry = next(ids, None)
            if entry is None:
                results.append(SendResult("transient", error="resend: no id in the answer"))
            else:
                results.append(SendResult("sent", provider_message_id=str(entry.get("id", ""))))
        return results


def check_dsn(dsn) -> None:
    if not dsn.user:
        raise ValueError("resend:// needs the API key as the user part, e.g. resend://KEY@default")


def from_dsn(dsn, settings=None) -> ResendTransport:
    return ResendTransport(dsn.user, **HttpTransport.common_options(dsn, settings))
