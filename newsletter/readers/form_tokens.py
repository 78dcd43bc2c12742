"""Cookie-less form tokens: signed, time-limited, bound to one form.

Flask-WTF's CSRF token lives in the session cookie, and a cross-site iframe
gets no cookie once the browser blocks third-party cookies: the sign-up box
on another site would always fail its CSRF check. These tokens need no
cookie. The page that shows a form signs what the form is for (``form``)
and anything the form must not be able to change (``bound``: the embedding
site, say) with the app's secret; the POST proves it came from a page we
served recently, and carries the bound values back unforgeably.

Used with an Origin/Referer check (a token alone can be fetched by anyone
and replayed until it expires); a token is not single-use, so the rate
limits stay what stops floods.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from newsletter import clock
from newsletter.tokens import TokenError, TokenExpired

MAX_AGE_SECONDS = 4 * 3600  # as long as a Flask-WTF token (app.CSRF_TIME_LIMIT)
SALT = "signal.form-token"


class _ClockSigner(TimestampSigner):
    def get_timestamp(self) -> int:  # the one clock, which tests move
        return int(clock.timestamp())


def _serializer(settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=SALT, signer=_ClockSigner)


def make_form_token(settings, form: str, bound: dict | None = None) -> str:
    """A token for one rendering of ``form``, carrying ``bound`` (small JSON values)."""
    return _serializer(settings).dumps({"f": form, "b": bound or {}})


def check_form_token(settings, token, form: str, max_age: int = MAX_AGE_SECONDS) -> dict:
    """The ``bound`` values of a genuine, fresh token for ``form``.

    Raises ``TokenExpired`` (genuine but older than ``max_age``: the reader
    should reload) or ``TokenError`` (missing, forged, or made for another form)."""
    if not isinstance(token, str) or not token or len(token) > 2000:
        raise TokenError("missing form token")
    try:
        data = _serializer(settings).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenExpired("form token expired") from exc
    except BadSignature as exc:
        raise TokenError("invalid form token") from exc
    if not isinstance(data, dict) or data.get("f") != form or not isinstance(data.get("b"), dict):
        raise TokenError("form token made for another form")
    return data["b"]
