"""``ses://ACCESS_KEY:SECRET@REGION``: Amazon SES v2 ``SendEmail`` with Raw content.

Each message goes as its own ``POST /v2/email/outbound-emails`` (the raw
RFC 5322 bytes we built, DKIM-signed when configured, base64 in
``Content.Raw.Data``), signed with AWS Signature Version 4 by botocore's
signer, so every entry has its own status: 200 with a ``MessageId``;
throttling (429 ``TooManyRequestsException``, ``LimitExceededException``)
and 5xx retried; ``MessageRejected`` rejected; account-level refusals
(403, ``AccountSuspendedException``, ``SendingPausedException``,
``MailFromDomainNotVerifiedException``) stop the send until a person acts.
DSN options: ``endpoint``, ``configuration_set``.
"""

from __future__ import annotations

import base64
import json
from email.utils import parseaddr

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Probe, SendResult, TransportError, dkim_signer
from newsletter.delivery.transports.http import HttpTransport, parse_retry_after

PATH = "/v2/email/outbound-emails"
ACCOUNT = "/v2/email/account"  # GetAccount: the cheapest signed call
THROTTLED = {"TooManyRequestsException", "LimitExceededException", "ThrottlingException"}
FATAL = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}


def error_type(response: requests.Response) -> str:
    raw = response.headers.get("x-amzn-ErrorType", "")
    if not raw:
        try:
            body = response.json()
            raw = str(body.get("__type") or body.get("code") or "")
        except ValueError:
            raw = ""
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


class SesTransport(HttpTransport):
    name = "ses"
    max_batch = 50

    def __init__(
        self,
        access_key: str,
        secret: str,
        region: str,
        *,
        configuration_set: str = "",
        signer=None,
        **options,
    ):
        self.default_endpoint = f"https://email.{region}.amazonaws.com"
        super().__init__(**options)
        self.region = region
        self.credentials = Credentials(access_key, secret)
        self.configuration_set = configuration_set
        self.dkim = signer

    def payload(self, message: OutgoingMessage) -> bytes:

        body = {
            "FromEmailAddress": parseaddr(message.sender)[1],
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Raw": {"Data": base64.b64encode(message.signed_bytes(self.dkim)).decode("ascii")}},
            "EmailTags": [{"Name": k, "Value": v} for k, v in message.metadata.items()],
        }
        if message.return_path:
            body["FeedbackForwardingEmailAddress"] = message.return_path
        if self.configuration_set:
            body["ConfigurationSetName"] = self.configuration_set
        return json.dumps(body).encode("utf-8")

    def signed_request(self, data: bytes) -> AWSRequest:
        request = AWSRequest(
            method="POST", url=self.endpoint + PATH, data=data, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(self.credentials, "ses", self.region).add_auth(request)
        return request

    def probe(self) -> Probe:
        """GetAccount, signed like a send: proves the key and reports whether
        sending is enabled and the account is out of the sandbox."""
        request = AWSRequest(method="GET", url=self.endpoint + ACCOUNT)
        SigV4Auth(self.credentials, "ses", self.region).add_auth(request)
        try:
            response = self.session.get(request.url, headers=dict(request.headers), timeout=self.timeout)
        except requests.RequestException as exc:
            return Probe("fail", f"ses: {exc}")
        if response.status_code != 200:
            return Probe(
                "fail",
                f"ses {response.status_code} {error_type(response)}: {' '.join(response.text[:200].split())}",
            )
        account = response.json()
        quota = account.get("SendQuota") or {}
        detail = f"ses ({self.region}): credentials accepted; {quota.get('MaxSendRate', '?')} messages/s, {quota.get('Max24HourSend', '?')} a day"
        if not account.get("SendingEnabled", False):
            return Probe("fail", detail + " — but sending is disabled for this account")
        if not account.get("ProductionAccessEnabled", False):
            return Probe(
                "warn", detail + " — but the account is in the SES sandbox (verified recipients only)"
            )
        return Probe("pass", detail)

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        request = self.signed_request(self.payload(message))
        try:
            response = self.session.post(
                request.url, data=request.body, headers=dict(request.headers), timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise TransportError(f"ses: {exc}") from exc
        if response.status_code == 200:
            return SendResult("sent", provider_message_id=str(response.json().get("MessageId", "")))
        kind = error_type(response)
        detail = f"ses {response.status_code} {kind}: {' '.join(response.text[:300].split())}"
        if response.status_code == 429 or kind in THROTTLED:
            return SendResult(
                "transient",
                error=detail,
                retry_after=parse_retry_after(response.headers.get("Retry-After")) or 1.0,
            )
        if response.status_code in (401, 403) or kind in FATAL:
            raise TransportError(detail, fatal=True)
        if response.status_code >= 500:
            return SendResult("transient", error=detail)
        return SendResult("rejected", error=detail)

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        results: list[SendResult] = []
        for index, message in enumerate(messages):
            try:
                results.append(self._send_one(message))
            except TransportError as exc:
                if index == 0:
                    raise
                results += [SendResult("transient", error=str(exc)) for _ in messages[index:]]
                break
        return results


def check_dsn(dsn) -> None:
    if not (dsn.user and dsn.password and dsn.host):
        raise ValueError("ses:// needs ses://ACCESS_KEY:SECRET@REGION")


def from_dsn(dsn, settings=None) -> SesTransport:
    return SesTransport(
        dsn.user,
        dsn.password,
        dsn.host,
        configuration_set=dsn.options.get("configuration_set", ""),
        signer=dkim_signer(settings),
        **HttpTransport.common_options(dsn, settings),
    )
