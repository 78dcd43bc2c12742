"""Transports by DSN scheme, one module per provider (Symfony Mailer style).

``parse_dsn`` validates a DSN without connecting; ``make_transport`` builds
the transport for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.delivery.transports.base import OutgoingMessage, SendResult, Transport, TransportError

__all__ = [
    "OutgoingMessage",
    "SendResult",
    "Transport",
    "TransportError",
    "Dsn",
    "parse_dsn",
    "make_transport",
]

SCHEMES = ("smtp", "smtps", "outbox", "postmark", "sendgrid", "mailgun", "ses", "resend")


@dataclass(frozen=True)
class Dsn:
    scheme: str
    user: str
    password: str
    host: str
    port: int | None
    path: str
    options: dict[str, str]


def parse_dsn(dsn: str) -> Dsn:
    parts = urlsplit(dsn.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unknown transport {parts.scheme!r} in {dsn!r}; use one of {', '.join(SCHEMES)}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {dsn!r}") from None
    parsed = Dsn(
        scheme=parts.scheme,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=parts.hostname or "",
        port=port,
        path=parts.path.lstrip("/"),
        options=dict(parse_qsl(parts.query)),
    )
    if parsed.scheme in {"smtp", "smtps"} and not parsed.host:
        raise ValueError(f"{dsn!r} needs a host, e.g. smtp://user:pass@mail.example.com:587")
    if parsed.scheme in {"postmark", "sendgrid", "resend", "mailgun"} and not parsed.user:
        raise ValueError(
            f"{parsed.scheme}:// needs the API key as the user part, e.g. {parsed.scheme}://KEY@default"
        )
    if parsed.scheme == "ses" and not (parsed.user and parsed.password and parsed.host):
        raise ValueError("ses:// needs ses://ACCESS_KEY:SECRET@REGION")
    return parsed


def make_transport(dsn: str, settings=None) -> Transport:
    """Build the transport named by ``dsn``. ``settings`` carries shared
    options (concurrency, DKIM) the transports may use."""
    parsed = parse_dsn(dsn)
    if parsed.scheme in {"smtp", "smtps"}:
        from newsletter.delivery.transports.smtp import SmtpTransport

        return SmtpTransport.from_dsn(parsed, settings)
    if parsed.scheme == "outbox":
        from newsletter.delivery.transports.outbox import OutboxTransport

        return OutboxTransport()
    import importlib

    module = importlib.import_module(f"newsletter.delivery.transports.{parsed.scheme}")
    return module.from_dsn(parsed, settings)
