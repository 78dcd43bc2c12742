"""``sendgrid://API_KEY@default``: SendGrid v3 ``POST /v3/mail/send``.

One request carries one body and up to 1,000 ``personalizations`` (one per
recipient), each with its ``substitutions`` (the recipient's unsubscribe and
preferences links put back in place of tags), its own List-Unsubscribe
``headers`` and ``custom_args`` (the delivery id, echoed by the event
webhook). SendGrid answers 202 with an ``X-Message-Id`` for the request. A
400 naming ``personalizations.N`` refuses that recipient: it is rejected and
the others are sent again without it.
"""

from __future__ import annotations

import re
from email.utils import parseaddr

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Probe, SendResult, TransportError
from newsletter.delivery.transports.http import Group, HttpTransport, templatise, whole_request_error

_FIELD = re.compile(r"personalizations\.(\d+)")


def tag(name: str) -> str:
    return f"-gts-{name}-"


class SendgridTransport(HttpTransport):
    name = "sendgrid"
    max_batch = 1000
    default_endpoint = "https://api.sendgrid.com"

    probe_path = "/v3/scopes"  # the key's own permissions

    def judge(self, answer) -> Probe:
        scopes = answer.get("scopes") or []
        if "mail.send" not in scopes:
            return Probe("fail", "sendgrid: the API key is valid but lacks the mail.send permission")
        return Probe("pass", f"sendgrid: API key accepted, with mail.send ({len(scopes)} scopes)")

    def __init__(self, key: str, **options):
        super().__init__(**options)
        self.session.headers.update({"Authorization": f"Bearer {key}"})

    @staticmethod
    def payload(group: Group, members) -> dict:
        name, address = _split_sender(group.sender)
        templated = {k for k, v in group.headers.items() if "-gts-" in v}
        personalizations = []
        for _, message, fields in members:
            recipient = {"email": message.to, **({"name": message.to_name} if message.to_name else {})}
            entry = {"to": [recipient], "custom_args": dict(message.metadata)}
            if fields:
                entry["substitutions"] = {tag(k): v for k, v in fields.items()}
            own = {k: message.headers[k] for k in templated}
            if own:
                entry["headers"] = own
            personalizations.append(entry)
        content = [{"type": "text/plain", "value": group.text}]
        if group.html is not None:
            content.append({"type": "text/html", "value": group.html})
        return {
            "personalizations": personalizations,
            "from": {"email": address, **({"name": name} if name else {})},
            "subject": group.subject,
            "content": content,
            "headers": {k: v for k, v in group.headers.items() if k not in templated},
            "tracking_settings": {
                "click_tracking": {"enable": False, "enable_text": False},
                "open_tracking": {"enable": False},
                "subscription_tracking": {"enable": False},
            },
        }

    def _post(self, group: Group, members) -> dict[int, SendResult]:
        """Send one group; returns results by message index."""
        outcome: dict[int, SendResult] = {}
        while members:
            response = self.request("POST", "/v3/mail/send", json=self.payload(group, members))
            if response.status_code == 202:
                provider_id = response.headers.get("X-Message-Id", "")
                outcome.update(
                    {i: SendResult("sent", provider_message_id=provider_id) for i, _, _ in members}
                )
                return outcome
            bad = _refused_personalizations(response) if response.status_code == 400 else set()
            if not bad or max(bad) >= len(members):
                raise whole_request_error(self.name, response)
            detail = f"sendgrid 400: {' '.join(response.text[:300].split())}"
            outcome.update({members[n][0]: SendResult("rejected", error=detail) for n in bad})
            members = [m for n, m in enumerate(members) if n not in bad]
        return outcome

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        for group in templatise(messages, tag):
            try:
                results.update(self._post(group, group.members))
            except TransportError as exc:
                if not results:
                    raise
                results.update(
                    {
                        i: SendResult("transient", error=str(exc), retry_after=exc.retry_after)
                        for i, _, _ in group.members
                    }
                )
        return [results[i] for i in range(len(messages))]


def _split_sender(sender: str) -> tuple[str, str]:

    return parseaddr(sender)


def _refused_personalizations(response) -> set[int]:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return set()
    found = set()
    for error in errors:
        match = _FIELD.match(str(error.get("field") or ""))
        if match is None:
            return set()  # an error about the request itself
        found.add(int(match.group(1)))
    return found


def check_dsn(dsn) -> None:
    if not dsn.user:
        raise ValueError("sendgrid:// needs the API key as the user part, e.g. sendgrid://KEY@default")


def from_dsn(dsn, settings=None) -> SendgridTransport:
    return SendgridTransport(dsn.user, **HttpTransport.common_options(dsn, settings))
