"""``mailgun://API_KEY@DOMAIN?region=eu``: Mailgun ``POST /v3/<domain>/messages``.

Batch sending: up to 1,000 ``to`` fields in one request with
``recipient-variables`` (a JSON object keyed by address), so Mailgun sends
each recipient a separate message with ``%recipient.<name>%`` replaced in
the body and headers (the per-recipient List-Unsubscribe). HTTP basic auth
with the user ``api``. US (``api.mailgun.net``) or EU (``api.eu.mailgun.net``)
host by ``region``.
"""

from __future__ import annotations

import json

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Probe, SendResult, TransportError
from newsletter.delivery.transports.http import Group, HttpTransport, templatise, whole_request_error

HOSTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


def tag(name: str) -> str:
    return f"%recipient.{name}%"


class MailgunTransport(HttpTransport):
    name = "mailgun"
    max_batch = 1000

    @property
    def probe_path(self) -> str:
        return f"/v3/domains/{self.domain}"

    def judge(self, answer) -> Probe:
        state = (answer.get("domain") or {}).get("state", "?")
        if state != "active":
            return Probe(
                "warn", f"mailgun: API key accepted, but the domain {self.domain} is {state}, not active"
            )
        return Probe("pass", f"mailgun: API key accepted; domain {self.domain} is active")

    def __init__(self, key: str, domain: str, *, region: str = "us", **options):
        if region not in HOSTS:
            raise ValueError(f"mailgun region must be us or eu, not {region!r}")
        self.default_endpoint = HOSTS[region]
        super().__init__(**options)
        self.domain = domain
        self.session.auth = ("api", key)

    @staticmethod
    def form(group: Group, members) -> list[tuple[str, str]]:
        variables = {}
        form: list[tuple[str, str]] = [("from", group.sender)]
        for _, message, fields in members:
            to = f'"{message.to_name}" <{message.to}>' if message.to_name else message.to
            form.append(("to", to))
            variables[message.to] = {**fields, **message.metadata}
        form += [("subject", group.subject), ("text", group.text)]
        if group.html is not None:
            form.append(("html", group.html))
        form += [(f"h:{k}", v) for k, v in group.headers.items()]
        form += [("recipient-variables", json.dumps(variables)), ("o:tracking", "no")]
        return form

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        for group in templatise(messages, tag):
            try:
                response = self.request(
                    "POST", f"/v3/{self.domain}/messages", data=self.form(group, group.members)
                )
            except TransportError as exc:
                if not results:
                    raise
                results.update(
                    {
                        i: SendResult("transient", error=str(exc), retry_after=exc.retry_after)
                        for i, _, _ in group.members
                    }
                )
                continue
            if response.status_code != 200:
                if not results:
                    raise whole_request_error(self.name, response)
                detail = f"mailgun {response.status_code}: {response.text[:200]}"
                results.update({i: SendResult("rejected", error=detail) for i, _, _ in group.members})
                continue
            provider_id = str(response.json().get("id", "")).strip("<>")
            results.update(
                {i: SendResult("sent", provider_message_id=provider_id) for i, _, _ in group.members}
            )
        return [results[i] for i in range(len(messages))]


def check_dsn(dsn) -> None:
    if not dsn.user:
        raise ValueError("mailgun:// needs the API key as the user part, e.g. mailgun://KEY@mg.example.org")
    if not dsn.host or dsn.host == "default":
        raise ValueError("mailgun:// needs the sending domain as host: mailgun://KEY@mg.example.org")


def from_dsn(dsn, settings=None) -> MailgunTransport:
    return MailgunTransport(
        dsn.user,
        dsn.host,
        region=dsn.options.get("region", "us"),
        **HttpTransport.common_options(dsn, settings),
    )
