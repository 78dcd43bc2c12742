"""``postmark://SERVER_TOKEN@default?stream=broadcast``: Postmark's batch API.

``POST /email/batch`` with up to 500 messages, authenticated by the
``X-Postmark-Server-Token`` header, each message on the ``MessageStream``
(newsletters belong on a broadcast stream). The answer is 200 even when some
messages were refused: every entry carries its own ``ErrorCode`` (0 = queued;
406 = inactive recipient, i.e. it hard-bounced or complained before: a
permanent failure; 300 = invalid email request: rejected without blaming
the address; others are retried).
"""

from __future__ import annotations

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Probe, SendResult
from newsletter.delivery.transports.http import HttpTransport, whole_request_error

INACTIVE_RECIPIENT = 406
INVALID_REQUEST = 300
_RESERVED = {"message-id"}  # Postmark assigns its own


class PostmarkTransport(HttpTransport):
    name = "postmark"
    max_batch = 500
    default_endpoint = "https://api.postmarkapp.com"

    probe_path = "/server"  # the server the token belongs to

    def judge(self, answer) -> Probe:
        return Probe(
            "pass",
            f"postmark: server token accepted (server {answer.get('Name', '?')!r}, stream {self.stream})",
        )

    def __init__(self, token: str, *, stream: str = "broadcast", **options):
        super().__init__(**options)
        self.stream = stream
        self.session.headers.update({"X-Postmark-Server-Token": token, "Accept": "application/json"})

    def payload(self, message: OutgoingMessage) -> dict:
        to = f'"{message.to_name}" <{message.to}>' if message.to_name else message.to
        body = {
            "From": message.sender,
            "To": to,
            "Subject": message.subject,
            "TextBody": message.text,
            "MessageStream": self.stream,
            "TrackOpens": False,
            "TrackLinks": "None",
            "Headers": [
                {"Name": k, "Value": v} for k, v in message.headers.items() if k.lower() not in _RESERVED
            ],
            "Metadata": dict(message.metadata),
        }
        if message.html is not None:
            body["HtmlBody"] = message.html
        return body

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        response = self.request("POST", "/email/batch", json=[self.payload(m) for m in messages])
        if response.status_code != 200:
            raise whole_request_error(self.name, response)
        entries = response.json()
        if not isinstance(entries, list) or len(entries) != len(messages):
            return [
                SendResult("transient", error="postmark: answer does not match the batch") for _ in messages
            ]
        return [self.result(entry) for entry in entries]

    @staticmethod
    def result(entry: dict) -> SendResult:
        code = int(entry.get("ErrorCode", -1))
        detail = f"postmark {code}: {entry.get('Message', '')}"
        if code == 0:
            return SendResult("sent", provider_message_id=str(entry.get("MessageID", "")))
        if code == INACTIVE_RECIPIENT:
            return SendResult("permanent", error=detail)
        if code == INVALID_REQUEST:
            return SendResult("rejected", error=detail)
        return SendResult("transient", error=detail)


def check_dsn(dsn) -> None:
    if not dsn.user:
        raise ValueError("postmark:// needs the API key as the user part, e.g. postmark://KEY@default")


def from_dsn(dsn, settings=None) -> PostmarkTransport:
    return PostmarkTransport(
        dsn.user, stream=dsn.options.get("stream", "broadcast"), **HttpTransport.common_options(dsn, settings)
    )
