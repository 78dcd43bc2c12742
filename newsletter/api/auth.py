"""Bearer-token authentication for the JSON API (NEWSLETTER_API_TOKENS)."""

from __future__ import annotations

import hmac
from functools import wraps

from flask import request

from newsletter.extensions import settings


def token_required(view):
    """Refuse the request with 401 unless it carries a configured bearer token.
    With no tokens configured the API is closed (403)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        tokens = settings().api_tokens
        if not tokens:
            return {"error": "api closed", "message": "set NEWSLETTER_API_TOKENS to open the API"}, 403
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.strip(), t) for t in tokens):
            return (
                {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
                401,
                {"WWW-Authenticate": 'Bearer realm="api"'},
            )
        return view(*args, **kwargs)

    return wrapper
