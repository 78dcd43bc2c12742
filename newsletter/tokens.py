"""Signed, single-purpose tokens for links in emails (itsdangerous).

Each purpose has its own salt, so a preferences token cannot unsubscribe and
an unsubscribe token cannot confirm. Confirmation tokens expire; the
per-recipient links in issues (unsubscribe, preferences) do not, because a
reader may click them in an old issue years later.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner, URLSafeTimedSerializer

from newsletter import clock

PURPOSES = ("confirm", "unsubscribe", "preferences", "click", "bounce")


class TokenError(ValueError):
    """Forged, malformed or wrong-purpose token."""


class TokenExpired(TokenError):
    """Genuine but too old; the page offers a fresh link."""

    def __init__(self, message: str, payload=None):
        super().__init__(message)
        self.payload = payload


def _check(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return purpose


def _signer(secret: str, purpose: str) -> Signer:
    return Signer(secret, salt=f"signal.{_check(purpose)}", digest_method=_sha256, key_derivation="hmac")


def _sha256():
    import hashlib

    return hashlib.sha256()


_signers: dict[tuple[str, str], Signer] = {}


def make_token(secret: str, purpose: str, value: int | str) -> str:
    """A stable token for ``value`` (a subscriber id, a delivery id, …)."""
    key = (secret, purpose)
    signer = _signers.get(key)
    if signer is None:
        signer = _signers[key] = _signer(secret, purpose)
    return signer.sign(str(value)).decode("ascii")


def read_token(secret: str, purpose: str, token: str) -> str:
    try:
        return _signer(secret, purpose).unsign(token).decode("utf-8")
    except (BadSignature, UnicodeError):
        raise TokenError("this link is not valid") from None


class _ClockSigner(TimestampSigner):
    """Reads ``newsletter.clock`` so tests can age a token."""

    def get_timestamp(self) -> int:
        return int(clock.now_aware().timestamp())


def _timed(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"signal.timed.{_check(purpose)}", signer=_ClockSigner)


def make_timed_token(secret: str, purpose: str, payload) -> str:
    return _timed(secret, purpose).dumps(payload)


def read_timed_token(secret: str, purpose: str, token: str, max_age_seconds: int):
    serializer = _timed(secret, purpose)
    try:
        return serializer.loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        payload = None
        try:
            payload = serializer.loads_unsafe(token)[1]
        except Exception:  # noqa: BLE001 - only used to offer a new link
            pass
        raise TokenExpired("this link has expired", payload) from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
