"""``POST /api/v1/articles``: articles in from other systems (bearer token).

One article object or a list of them; an idempotent upsert by external id
or canonical URL, within this token's own articles; every invalid item
reported with its index, the valid ones stored (an item whose URL another
source holds is listed in ``skipped``). 200 when everything was stored, 207 when some items failed, 400 when
none could be stored.
"""

from __future__ import annotations

from flask import request

from newsletter.api.auth import client_scope, endpoint
from newsletter.api.openapi import document, schema
from newsletter.api.problems import Problem
from newsletter.api.views import bp
from newsletter.content.service import MAX_ITEMS, upsert_articles

PATH = "/articles"


@bp.post(PATH, endpoint="articles_upsert")
@endpoint("articles:write", idempotent=True)
def articles_upsert():
    if request.mimetype != "application/json":
        raise Problem(
            415, "send a JSON body with Content-Type: application/json", kind="unsupported-media-type"
        )
    body = request.get_json(silent=True)
    if isinstance(body, dict):
        items = [body]
    elif isinstance(body, list):
        items = body
    else:
        raise Problem(400, "the body must be an article object or a list of them", kind="invalid")
    report = upsert_articles(items, "api", scope=client_scope())
    result = report.as_dict()
    if not report.errors:
        return result, 200
    if report.created or report.updated:
        return result, 207
    raise Problem(400, "no article was stored", kind="invalid", **result)


schema(
    "Article",
    {
        "type": "object",
        "required": ["title", "url"],
        "additionalProperties": False,
        "properties": {
            "external_id": {
                "type": "string",
                "maxLength": 300,
                "description": "your stable id; upserts match on it (alias: id)",
            },
            "id": {"type": ["string", "integer"], "description": "alias of external_id"},
            "url": {
                "type": "string",
                "format": "uri",
                "description": "absolute http(s) URL; matched canonically when no external id",
            },
            "title": {"type": "string", "maxLength": 500},
            "synopsis": {
                "type": "string",
                "maxLength": 20000,
                "description": "Markdown; raw HTML is shown as text",
            },
            "author": {"type": "string", "maxLength": 200},
            "published_at": {"type": "string", "format": "date-time", "description": "ISO 8601; default now"},
            "reading_minutes": {"type": "integer", "minimum": 1, "maximum": 600},
            "image_url": {
                "type": "string",
                "format": "uri",
                "description": "shown in email only if https and image_alt is set",
            },
            "image_alt": {"type": "string", "maxLength": 500},
            "tags": {
                "type": "array",
                "maxItems": 20,
                "items": {"type": "string"},
                "description": "slugs or names; new tags become sections",
            },
        },
    },
)
schema(
    "ArticleUpsertReport",
    {
        "type": "object",
        "properties": {
            "created": {"type": "integer"},
            "updated": {"type": "integer"},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"index": {"type": "integer"}, "message": {"type": "string"}},
                },
            },
            "skipped": {
                "type": "array",
                "description": "valid items not stored: another source (token, feed, file) holds their URL",
                "items": {
                    "type": "object",
                    "properties": {"index": {"type": "integer"}, "message": {"type": "string"}},
                },
            },
        },
    },
)
_report = {"application/json": {"schema": {"$ref": "#/components/schemas/ArticleUpsertReport"}}}
document(
    PATH,
    {
        "post": {
            "summary": "Create or update articles",
            "description": f"One article or a list (at most {MAX_ITEMS}). Idempotent: an article is matched by "
            "external_id, else by canonical URL, among this token's own articles (another token, a feed or a "
            "file import never matches). Invalid items are listed in `errors` by index; valid ones are stored.",
            "operationId": "upsertArticles",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Article"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/Article"}},
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "all items stored", "content": _report},
                "207": {"description": "some items stored, others listed in errors", "content": _report},
                "400": {"description": "nothing stored", "content": _report},
                "401": {"description": "missing or wrong bearer token"},
                "403": {"description": "API closed (no NEWSLETTER_API_TOKENS)"},
                "415": {"description": "not JSON"},
            },
        }
    },
)
