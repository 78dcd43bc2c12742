"""Every token-protected API request goes through ``endpoint``: bearer token
→ scope → per-token rate limit → Idempotency-Key → the view → audit record.

Tokens are the stored, scoped ones (``access.tokens``) and those of
``NEWSLETTER_API_TOKENS`` (every scope). With neither, the API is closed
(403). Each token is its own API client: ``client_scope()`` names the scope
of the external ids its articles are matched in (``content.service``), so
one client cannot overwrite another's articles; an environment token keeps
the scope it always had.
"""

from __future__ import annotations

import json
import re
from functools import wraps

from flask import Response, g, make_response, request
from sqlalchemy import exists
from sqlmodel import select

from newsletter.access import audit, idempotency, tokens
from newsletter.api.openapi import KEY_PATTERN
from newsletter.api.problems import Problem, from_problem, problem_response
from newsletter.content.service import source_key
from newsletter.db import session_scope
from newsletter.delivery.send import DeliveryError
from newsletter.extensions import limiter, settings
from newsletter.models import ApiToken

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
REPLAYED = "Idempotent-Replayed"


def _bearer() -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return given.strip() or None


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'})


def current_principal() -> tokens.Principal:
    """Authenticate the request (401/403 problems); cached on ``g``."""
    if "api_principal" in g:
        return g.api_principal
    env_tokens = settings().api_tokens
    secret = _bearer()
    with session_scope() as session:
        principal = tokens.authenticate(session, secret or "", env_tokens)
        if principal is None:
            any_stored = session.exec(select(exists().where(ApiToken.revoked_at.is_(None)))).one()
    if principal is None:
        if not env_tokens and not any_stored:
            raise Problem(
                403,
                "the API is closed: create a token (`newsletter token create`) or set NEWSLETTER_API_TOKENS",
                kind="api-closed",
            )
        raise _unauthorized("send Authorization: Bearer <token> with a valid, unrevoked token")
    g.api_principal = principal
    g.api_article_scope = (
        source_key("api", secret) if principal.token_id is None else source_key("api", principal.ref)
    )
    return principal


def client_scope() -> str:
    """The scope of the authenticated client's articles (inside ``endpoint``)."""
    return g.api_article_scope


def _token_key() -> str:
    return g.api_principal.ref


def _rate() -> str:
    return settings().api_rate_limit


_per_token = limiter.shared_limit(_rate, scope="api-token", key_func=_token_key)


def _respond(view, args, kwargs) -> Response:
    """The view's answer as a Response; refusals from the services become problems."""
    try:
        return make_response(view(*args, **kwargs))
    except Problem as exc:
        return from_problem(exc)
    except LookupError as exc:
        return problem_response(404, str(exc) or "not found", kind="not-found")
    except (ValueError, DeliveryError) as exc:  # a state the action does not allow; the message says why
        return problem_response(409, str(exc), kind="conflict")


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not re.fullmatch(KEY_PATTERN, key) or len(key) > idempotency.MAX_KEY:
        raise Problem(
            400,
            f"Idempotency-Key must be 1 to {idempotency.MAX_KEY} printable ASCII characters",
            kind="invalid",
            field="Idempotency-Key",
        )
    return key


def _idempotent_call(principal, view, args, kwargs) -> Response:
    key = idempotency_key()
    if key is None:
        return _respond(view, args, kwargs)
    path = request.full_path if request.query_string else request.path
    try:
        stored = idempotency.begin(principal.ref, key, request.method, path, request.get_data())
    except idempotency.KeyReused:
        raise Problem(
            409,
            "this Idempotency-Key was used with a different request; use a new key",
            kind="idempotency-key-reused",
        ) from None
    except idempotency.InProgress:
        raise Problem(
            409,
            "a request with this Idempotency-Key is still being processed; retry shortly",
            kind="in-progress",
            headers={"Retry-After": "1"},
        ) from None
    if stored is not None:
        response = Response(stored.body, status=stored.status, headers=stored.headers)
        response.headers[REPLAYED] = "true"
        g.api_replayed = True
        return response
    try:
        response = _respond(view, args, kwargs)
    except Exception:
        idempotency.abandon(principal.ref, key)
        raise
    if response.status_code >= 500:
        idempotency.abandon(principal.ref, key)
    else:
        keep = {
            k: v for k, v in response.headers.items() if k.lower() in ("content-type", "etag", "location")
        }
        idempotency.finish(principal.ref, key, response.status_code, response.get_data(as_text=True), keep)
    return response


def _audit(principal, response: Response) -> None:
    if request.method in READ_METHODS or g.get("api_replayed"):
        return
    detail = ""
    if response.status_code >= 400 and response.mimetype.endswith("json"):
        try:
            detail = str(json.loads(response.get_data(as_text=True)).get("detail", ""))
        except (ValueError, AttributeError):
            detail = ""
    with session_scope() as session:
        audit.record(
            session,
            actor=principal.actor,
            action=f"{request.method} {request.url_rule.rule if request.url_rule else request.path}",
            target=request.path,
            status=response.status_code,
            detail=detail,
        )


def endpoint(scope: str, *, idempotent: bool = False):
    """Protect an API view: a token with ``scope``, the per-token rate limit,
    ``Idempotency-Key`` (when ``idempotent``) and the audit record."""

    def decorate(view):
        @_per_token
        def limited(*args, **kwargs):
            principal = g.api_principal
            if idempotent:
                return _idempotent_call(principal, view, args, kwargs)
            return _respond(view, args, kwargs)

        @wraps(view)
        def wrapper(*args, **kwargs):
            try:
                principal = current_principal()
                if scope not in principal.scopes:
                    raise Problem(
                        403,
                        f"this token lacks the {scope} scope",
                        kind="insufficient-scope",
                        headers={
                            "WWW-Authenticate": f'Bearer realm="api", error="insufficient_scope", scope="{scope}"'
                        },
                        required_scope=scope,
                    )
                response = limited(*args, **kwargs)
            except Problem as exc:
                response = from_problem(exc)
                principal = g.get("api_principal")
            if principal is not None:
                _audit(principal, response)
            return response

        wrapper.required_scope = scope
        return wrapper

    return decorate


# The name older modules import.
def token_required(view):
    return endpoint("articles:write")(view)
