"""Bearer-token authentication for the JSON API (NEWSLETTER_API_TOKENS).

Each token is its own API client: ``client_scope()`` names the scope of
the external ids its articles are matched in (``content.service``), so
one client cannot overwrite another's articles.
"""

from __future__ import annotations

import hmac
from functools import wraps

from flask import g, request

from newsletter.content.service import source_key
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
        given = given.strip()
        # compare with every token (no early exit), so timing tells nothing
        matches = [t for t in tokens if hmac.compare_digest(given.encode(), t.encode())]
        if scheme.lower() != "bearer" or not matches:
            return (
                {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
                401,
                {"WWW-Authenticate": 'Bearer realm="api"'},
            )
        g.api_scope = source_key("api", matches[0])
        return view(*args, **kwargs)

    return wrapper


def client_scope() -> str:
    """The scope of the authenticated client's articles (inside ``token_required``)."""
    return g.api_scope
