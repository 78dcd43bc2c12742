"""Per-reader links that travel in emails.

Unsubscribe and preferences links never expire (a reader may click them in
an issue from last year); the confirmation link does, and carries the time it
was issued so a link sent before an unsubscribe cannot quietly resubscribe.
"""

from __future__ import annotations

from newsletter import clock, tokens


def _url(settings, path: str, token: str) -> str:
    return f"{settings.base_url}/{path}/{token}"


def unsubscribe_token(settings, subscriber_id: int) -> str:
    return tokens.make_token(settings.secret_key, "unsubscribe", subscriber_id)


def unsubscribe_url(settings, subscriber_id: int) -> str:
    return _url(settings, "unsubscribe", unsubscribe_token(settings, subscriber_id))


def preferences_token(settings, subscriber_id: int) -> str:
    return tokens.make_token(settings.secret_key, "preferences", subscriber_id)


def preferences_url(settings, subscriber_id: int) -> str:
    return _url(settings, "preferences", preferences_token(settings, subscriber_id))


def confirm_token(settings, subscriber_id: int, request_id: int | None = None) -> str:
    """A confirmation link's token: the reader, when it was issued, and the
    ``SubscribeRequest`` it confirms (if the reader already had a record)."""
    payload = {"s": subscriber_id, "t": int(clock.now().timestamp())}
    if request_id is not None:
        payload["r"] = request_id
    return tokens.make_timed_token(settings.secret_key, "confirm", payload)


def confirm_url(settings, subscriber_id: int, request_id: int | None = None) -> str:
    return _url(settings, "confirm", confirm_token(settings, subscriber_id, request_id))


def read_confirm_token(settings, token: str) -> tuple[int, int, int | None]:
    """(subscriber id, issued at as a UNIX time, request id or None); raises TokenError/TokenExpired."""
    payload = tokens.read_timed_token(
        settings.secret_key, "confirm", token, settings.token_max_age_days * 86400
    )
    return _confirm_payload(payload)


def _confirm_payload(payload) -> tuple[int, int, int | None]:
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("s"), int)
        or not isinstance(payload.get("t"), int)
        or not isinstance(payload.get("r", 0), int)
    ):
        raise tokens.TokenError("this link is not valid")
    return payload["s"], payload["t"], payload.get("r")


def expired_confirm_subscriber(payload) -> int | None:
    """The subscriber id inside a genuine but expired confirmation token."""
    try:
        return _confirm_payload(payload)[0]
    except tokens.TokenError:
        return None


def read_subscriber_token(settings, purpose: str, token: str) -> int:
    """The subscriber id from an unsubscribe or preferences token."""
    value = tokens.read_token(settings.secret_key, purpose, token)
    if not value.isdigit():
        raise tokens.TokenError("this link is not valid")
    return int(value)
