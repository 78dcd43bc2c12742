"""Rate limits of the public subscribe endpoints (Flask-Limiter).

Two limits, shared by the form, the "new link" form and the JSON API:
per client IP (``NEWSLETTER_SUBSCRIBE_RATE_LIMIT``) and per target address
(``NEWSLETTER_CONFIRM_MAX_PER_DAY`` requests a day), so nobody can use us to
mail-bomb a third party. The limiter's memory is per process; the service's
database counter (``Subscriber.confirm_sent_count``) is what holds across
restarts and workers.
"""

from __future__ import annotations

from flask import request
from flask_limiter.util import get_remote_address

from newsletter.extensions import limiter, settings


def _ip_limit() -> str:
    return settings().subscribe_rate_limit


def _address_limit() -> str:
    return f"{settings().confirm_max_per_day}/day"


def address_key() -> str:
    """The target address as typed (lower-cased), or the client IP when none."""
    raw = None
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            raw = body.get("email")
    else:
        raw = request.form.get("email")
    if isinstance(raw, str) and raw.strip():
        return "addr:" + raw.strip().lower()[:320]
    return "addr-ip:" + (get_remote_address() or "")


_per_ip = limiter.shared_limit(_ip_limit, scope="subscribe-ip", methods=["POST"])


def _accepted(response) -> bool:
    """Only accepted requests count against an address: a typo must not use up a person's quota."""
    return response.status_code < 400


_per_address = limiter.shared_limit(
    _address_limit, scope="subscribe-address", key_func=address_key, methods=["POST"], deduct_when=_accepted
)


def subscribe_limits(view):
    """Both limits on one view."""
    return _per_ip(_per_address(view))


def per_client_limit(view):
    """The per-IP limit alone, for requests that name no address (a link mail
    asked for from a reader's own page; its cap per reader is in the database)."""
    return _per_ip(view)
