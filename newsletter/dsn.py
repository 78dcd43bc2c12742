"""Transport DSNs (``scheme://user:password@host:port/path?option=value``),
Symfony Mailer style: one string names a provider and carries its
credentials and options.

This module only reads the shape every DSN shares; the rules of each scheme
(what must be there, what the options mean) are declared by the provider's
module in ``newsletter.delivery.transports``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True)
class Dsn:
    scheme: str
    user: str
    password: str
    host: str
    port: int | None
    path: str
    options: dict[str, str]


def parse_dsn(raw: str) -> Dsn:
    """The parts of ``raw``; ValueError when it is not ``scheme://…`` or its port is not a number."""
    parts = urlsplit(raw.strip())
    if not parts.scheme or not raw.strip().startswith(f"{parts.scheme}://"):
        raise ValueError(f"{raw!r} is not a DSN like smtp://user:pass@host:587")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {raw!r}") from None
    return Dsn(
        scheme=parts.scheme.lower(),
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=parts.hostname or "",
        port=port,
        path=parts.path.lstrip("/"),
        options=dict(parse_qsl(parts.query)),
    )
