"""API views shared by every resource: the OpenAPI document and its
reference page (rendered here, from the same document: no CDN, no script).

Resources live in their own modules (issues.py, articles.py, readers.py,
subscribers.py, stats.py), imported by the app so their routes register on
the blueprint.
"""

import json

from flask import Blueprint, render_template

from newsletter.api.openapi import openapi_document
from newsletter.extensions import settings

bp = Blueprint("api", __name__)
METHODS = ("get", "post", "patch", "delete")
PROBLEM_KINDS = {
    "invalid": "The request does not fit the document (schema, parameter); `field` names the culprit.",
    "refused": "Well-formed, but refused by a rule the schema cannot express (an address that cannot receive "
    "mail, a time in the past, an unknown article id); `field` names the culprit.",
    "unauthorized": "No bearer token, or one that is unknown or revoked.",
    "insufficient-scope": "The token lacks the scope in `required_scope`.",
    "api-closed": "No token exists and NEWSLETTER_API_TOKENS is empty.",
    "not-found": "No such resource.",
    "conflict": "The resource's state does not allow the action; the detail says why.",
    "nothing-to-assemble": "No eligible articles for a new issue.",
    "precondition-failed": "If-Match names another version: GET again, re-apply, retry.",
    "precondition-required": "This update needs If-Match.",
    "idempotency-key-reused": "The Idempotency-Key came before with a different request.",
    "in-progress": "The first request with this Idempotency-Key is still running.",
    "unsupported-media-type": "Send JSON with Content-Type: application/json.",
    "transport": "The mail server or provider refused a test send.",
}


@bp.get("/openapi.json")
def openapi():
    return openapi_document(settings().base_url)


def _operations(document: dict) -> list[dict]:
    ops = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                security = op.get("security", document["security"])
                scopes = [s for req in security for s in req.get("bearer", [])]
                ops.append(
                    {
                        "method": method.upper(),
                        "path": path,
                        "op": op,
                        "public": security == [],
                        "scopes": scopes,
                        "anchor": op.get("operationId") or f"{method}-{path}",
                        "body": json.dumps(
                            op.get("requestBody", {})
                            .get("content", {})
                            .get("application/json", {})
                            .get("schema"),
                            indent=2,
                        )
                        if "requestBody" in op
                        else None,
                    }
                )
    return ops


@bp.get("/reference")
def reference():
    """The API reference, rendered from the OpenAPI document on the server."""
    document = openapi_document(settings().base_url)
    return render_template(
        "api_reference.html",
        document=document,
        operations=_operations(document),
        schemas={
            name: json.dumps(spec, indent=2) for name, spec in document["components"]["schemas"].items()
        },
        problems=PROBLEM_KINDS,
    )
