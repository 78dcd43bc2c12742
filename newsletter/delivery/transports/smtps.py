"""``smtps://user:pass@host:465``: SMTP over implicit TLS (``smtp`` does the work)."""

from newsletter.delivery.transports.smtp import check_dsn, from_dsn

__all__ = ["check_dsn", "from_dsn"]
