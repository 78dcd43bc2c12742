"""Cookie-less CSRF protection for public forms on cacheable pages.

Flask-WTF's CSRF token lives in the visitor's session: a page that carries
one sets a cookie and differs for every visitor, so no CDN or browser cache
can keep it. The public forms (the subscribe form on ``/``, the embeddable
sign-up box) use this module instead; nothing here needs a session.

Two checks, both required:

- **A signed, time-limited form token** (itsdangerous ``TimestampSigner``,
  one salt per form purpose). It is the same for every visitor during one
  ``WINDOW_SECONDS`` window — signed with the window's start, not the
  moment of the request — so a page rendered at 10:05 and one rendered at
  10:55 are byte for byte the same and cache as one. It is accepted for
  ``MAX_AGE_SECONDS`` after its window started: a page kept by a cache
  (``max-age`` + ``stale-while-revalidate``) still holds a token that works,
  a form left open over a weekend does not. A forged, altered, other-form
  or expired token is refused.
- **The browser's own word on where the form came from**: ``Sec-Fetch-Site``
  (sent by every current browser) must be ``same-origin`` or ``none``;
  without it, an ``Origin`` header must be ours. This is what stops another
  site from making a visitor's browser post the form (the token alone
  cannot: it is public, like the page). Origins the operator allows (the
  embedding sites) pass. A request with neither header is not from a
  current browser; it still needs the token (as the rate limits still
  apply).

The sign-up box on other sites (``readers.box``) needs more than a shared
token: its token carries what the form must not change (the embedding
site, the page, whether topics were offered), so it is a signed payload
made per rendering (``make_form_token`` / ``check_form_token``), checked
with ``readers.origins``' Origin/Referer rule instead of ``check_origin``.
Both kinds are signed the same way here; neither is single-use, so the rate
limits stay what stops floods.

This is the protection OWASP lists as "verifying origin with standard
headers" plus a signed token, and the one Go's ``http.CrossOriginProtection``
and Rails' per-form tokens settle on for cookie-less forms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from newsletter import clock
from newsletter.tokens import TokenError, TokenExpired

WINDOW_SECONDS = 3600
MAX_AGE_SECONDS = 6 * 3600
SAME_SITE = ("same-origin", "none")  # "none": typed in, a bookmark — not another site


BOX_MAX_AGE_SECONDS = 4 * 3600  # a box's token: as long as a Flask-WTF token (app.CSRF_TIME_LIMIT)
BOX_SALT = "signal.form-token"


class FormTokenError(TokenError):
    """The form cannot be accepted; the message says why (shown to the visitor)."""


class FormTokenExpired(FormTokenError, TokenExpired):
    """Genuine but older than its lifetime: reload the page."""


def _signer_class(timestamp: int | None) -> type[TimestampSigner]:
    """A signer on the one clock (which tests move), or pinned to ``timestamp``."""

    class _At(TimestampSigner):
        def get_timestamp(self) -> int:
            return _now() if timestamp is None else timestamp

    return _At


def _signer(secret: str, purpose: str, timestamp: int) -> TimestampSigner:
    return _signer_class(timestamp)(secret, salt=f"form-token:{purpose}")


def _now() -> int:
    return int(clock.now().timestamp())


def window_start(now: int | None = None) -> int:
    """The start (Unix seconds) of the window the current token belongs to."""
    now = _now() if now is None else now
    return now - now % WINDOW_SECONDS


def issue(secret: str, purpose: str) -> str:
    """The token for form ``purpose`` in the current window (the same for everyone)."""
    return _signer(secret, purpose, window_start()).sign(purpose).decode()


def check_token(secret: str, purpose: str, token: str | None, *, max_age: int = MAX_AGE_SECONDS) -> None:
    """Raise ``FormTokenError`` unless ``token`` is a genuine, unexpired token for ``purpose``."""
    if not token:
        raise FormTokenError("The CSRF token is missing.")
    try:
        value = _signer(secret, purpose, _now()).unsign(token, max_age=max_age)
    except SignatureExpired:
        raise FormTokenExpired("The CSRF token has expired.") from None
    except BadSignature:
        raise FormTokenError("The CSRF token is invalid.") from None
    if value != purpose.encode():
        raise FormTokenError("The CSRF token is invalid.")


def check_origin(headers: Mapping[str, str], own_origins: Iterable[str], allowed: Iterable[str] = ()) -> None:
    """Raise ``FormTokenError`` when the browser says the form was sent from another site."""
    origin = headers.get("Origin")
    trusted = {o.rstrip("/") for o in own_origins} | {o.rstrip("/") for o in allowed}
    if origin and origin.rstrip("/") in trusted:
        return
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site in SAME_SITE:
            return
        raise FormTokenError("The form was sent from another site (CSRF).")
    if origin:  # an older browser: only the Origin to go by, and it is not ours
        raise FormTokenError("The form was sent from another site (CSRF).")


def check(
    secret: str,
    purpose: str,
    token: str | None,
    headers: Mapping[str, str],
    own_origins: Iterable[str],
    allowed: Iterable[str] = (),
) -> None:
    """Both checks: where the form came from, then its token."""
    check_origin(headers, own_origins, allowed)
    check_token(secret, purpose, token)


def _serializer(settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=BOX_SALT, signer=_signer_class(None))


def make_form_token(settings, form: str, bound: dict | None = None) -> str:
    """A token for one rendering of ``form``, carrying ``bound`` (small JSON values)."""
    return _serializer(settings).dumps({"f": form, "b": bound or {}})


def check_form_token(settings, token, form: str, max_age: int = BOX_MAX_AGE_SECONDS) -> dict:
    """The ``bound`` values of a genuine, fresh token for ``form``.

    Raises ``FormTokenExpired`` (genuine but older than ``max_age``: the reader
    should reload) or ``FormTokenError`` (missing, forged, or made for another form)."""
    if not isinstance(token, str) or not token or len(token) > 2000:
        raise FormTokenError("missing form token")
    try:
        data = _serializer(settings).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise FormTokenExpired("form token expired") from exc
    except BadSignature as exc:
        raise FormTokenError("invalid form token") from exc
    if not isinstance(data, dict) or data.get("f") != form or not isinstance(data.get("b"), dict):
        raise FormTokenError("form token made for another form")
    return data["b"]
