"""``POST /api/v1/articles``: articles in from other systems (bearer token).

One article object or a list of them; an idempotent upsert by external id
or canonical URL, within this token's own articles; every invalid item
reported with its index, the valid ones stored (an item whose URL another
source holds is listed in ``skipped``). 200 when everything was stored, 207 when some items failed, 400 when
none could be stored.
"""

from __future__ import annotations

from flask import request
from sqlmodel import select

from newsletter import queries
from newsletter.api.auth import client_scope, endpoint
from newsletter.api.conventions import (
    check_if_match,
    check_schema,
    enum_arg,
    etag_of,
    json_object,
    one_rule,
    only_fields,
    page_args,
    paged,
    whole_numbers,
)
from newsletter.api.openapi import (
    HTTP_URL,
    PAGE_PARAMETERS,
    VISIBLE,
    document,
    json_content,
    operation,
    page_of,
    problem,
    ref,
    schema,
)
from newsletter.api.problems import Problem
from newsletter.api.views import bp
from newsletter.content.service import MAX_ITEMS, set_held, upsert_articles
from newsletter.content.tagging import ArticleError, parse_tags, set_article_tags
from newsletter.db import MAX_INTEGER, contains_any, session_scope
from newsletter.extensions import settings
from newsletter.issues.service import sections
from newsletter.models import Article, ArticleTag, Tag
from newsletter.web import text_arg

PATH = "/articles"


ARTICLE_LIST = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_ITEMS,
    "items": {"type": "object"},
    "contains": ref("Article"),
    "description": "each item is checked on its own: those that fit Article are stored, the others listed in "
    "errors by index (207); at least one must fit",
}


def _item_errors(items: list) -> list[dict]:
    """Why each item of a refused list does not fit Article (by index)."""
    errors = []
    for index, item in enumerate(items):
        try:
            check_schema(item, ref("Article"))
        except Problem as exc:
            errors.append({"index": index, "message": exc.detail})
    return errors


@bp.post(PATH, endpoint="articles_upsert")
@endpoint("articles:write", idempotent=True)
def articles_upsert():
    """One article (must fit Article) or a list (at least one item must fit);
    schema violations are 400, rules the schema cannot express 422 (207 when
    some items were stored)."""
    if request.mimetype != "application/json":
        raise Problem(
            415, "send a JSON body with Content-Type: application/json", kind="unsupported-media-type"
        )
    body = request.get_json(silent=True)
    nothing = {"created": 0, "updated": 0, "ids": [], "skipped": []}
    if isinstance(body, dict):
        items = [body]
        try:
            check_schema(body, ref("Article"))
        except Problem as exc:
            raise Problem(
                400, exc.detail, kind="invalid", **nothing, errors=[{"index": 0, "message": exc.detail}]
            ) from None
    elif isinstance(body, list):
        items = body
        try:
            check_schema(body, ARTICLE_LIST)
        except Problem as exc:
            errors = _item_errors(body) if 0 < len(body) <= MAX_ITEMS else []
            raise Problem(400, exc.detail, kind="invalid", **nothing, errors=errors) from None
    else:
        raise Problem(400, "the body must be an article object or a list of them", kind="invalid")
    report = upsert_articles(whole_numbers(items), "api", scope=client_scope())
    result = report.as_dict()
    if not report.errors:
        return result, 200
    if report.created or report.updated:
        return result, 207
    raise Problem(422, "no article was stored", kind="refused", **result)


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
            "id": {
                "anyOf": [
                    {"type": "string", "maxLength": 300},
                    {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
                ],
                "description": "alias of external_id",
            },
            "url": {
                "type": "string",
                "maxLength": 2000,
                "pattern": HTTP_URL,
                "description": "absolute http(s) URL without credentials; matched canonically when no external id",
            },
            "title": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": VISIBLE},
            "synopsis": {
                "type": "string",
                "maxLength": 20000,
                "description": "Markdown; raw HTML is shown as text",
            },
            "author": {"type": "string", "maxLength": 200},
            "published_at": {
                "anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}],
                "description": "ISO 8601; empty or left out: now",
            },
            "reading_minutes": {"type": "integer", "minimum": 1, "maximum": 600},
            "image_url": {
                "type": "string",
                "maxLength": 2000,
                "pattern": "^$|" + HTTP_URL,
                "description": "shown in email only if https and image_alt is set",
            },
            "image_alt": {"type": "string", "maxLength": 500},
            "tags": {
                "type": "array",
                "maxItems": 20,
                "items": {"type": "string", "pattern": "[A-Za-z0-9]"},
                "description": "slugs or names (with a letter or digit); new tags become sections",
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
        "post": operation(
            "upsertArticles",
            "Create or update articles",
            scope="articles:write",
            description=f"One article or a list (at most {MAX_ITEMS}). Idempotent: an article is matched by "
            "external_id, else by canonical URL, among this token's own articles (another token, a feed or a "
            "file import never matches). In a list, items that do not fit are listed in `errors` by index and "
            "the others stored (207).",
            body={"anyOf": [ref("Article"), ARTICLE_LIST]},
            responses={
                "200": {"description": "all items stored", "content": _report},
                "207": {"description": "some items stored, others listed in errors", "content": _report},
                "400": problem(400, "the body does not fit (nothing stored; errors by index)"),
                "422": problem(422, "nothing stored: no item passed the rules the schema cannot express"),
            },
            errors=(413, 415),
            idempotent=True,
        )
    },
)


# --- reading and curating: list, read, hold/release, tags ---------------------------------------

ARTICLE_ID = {
    "name": "article_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER},
}


def article_json(article: Article, tags: list[str]) -> dict:
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "author": article.author,
        "synopsis": article.synopsis,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "held": article.held,
        "tags": tags,
    }


def _one(article_id: int):
    with session_scope() as session:
        article = session.get(Article, article_id)
        if article is None:
            raise Problem(404, f"there is no article {article_id}", kind="not-found")
        body = article_json(article, queries.tags_by_article(session, [article_id])[article_id])
    return body, 200, {"ETag": etag_of(body)}


@bp.get(PATH, endpoint="articles_list", provide_automatic_options=False)
@endpoint("issues:read")
def articles_list():
    """Newest first; ``q`` (title or author), ``tag`` and ``held`` filter."""
    limit, after = page_args()
    q = text_arg("q", 200)
    tag = text_arg("tag", 80)
    held = enum_arg("held", ("true", "false"))
    with session_scope() as session:
        query = select(Article).order_by(Article.id.desc()).limit(limit + 1)
        if q:
            query = query.where(contains_any(q, Article.title, Article.author))
        if tag:
            query = query.where(
                Article.id.in_(
                    select(ArticleTag.article_id)
                    .join(Tag, Tag.id == ArticleTag.tag_id)
                    .where(Tag.slug == tag)
                )
            )
        if held:
            query = query.where(Article.held.is_(held == "true"))
        if after is not None:
            query = query.where(Article.id < after)
        rows = list(session.exec(query))
        tags = queries.tags_by_article(session, [a.id for a in rows[:limit]])
        items = [article_json(a, tags[a.id]) for a in rows[:limit]]
    return paged(items, rows, limit, lambda a: a.id)


@endpoint("issues:read")
def article_read(article_id: int):
    return _one(article_id)


@endpoint("articles:write")
def article_update(article_id: int):
    """Hold back from the next issue or release (``held``), and replace the tags (``tags``)."""
    body = json_object(ref("ArticlePatch"))
    only_fields(body, {"held", "tags"})
    if "held" in body and not isinstance(body["held"], bool):
        raise Problem(400, "held must be true or false", kind="invalid", field="held")
    tags = body.get("tags")
    if "tags" in body and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise Problem(400, "tags must be a list of tag slugs", kind="invalid", field="tags")
    current, _, _ = _one(article_id)
    check_if_match(etag_of(current), required=False)
    try:
        slugs = parse_tags(",".join(tags)) if tags is not None else None
        with session_scope() as session:
            if "held" in body:
                set_held(session, article_id, body["held"])
            if slugs is not None:
                set_article_tags(session, article_id, slugs)
    except ArticleError as exc:
        raise Problem(422, str(exc), kind="refused", field="tags") from None
    return _one(article_id)


one_rule(bp, f"{PATH}/<int:article_id>", "article", {"GET": article_read, "PATCH": article_update})


@bp.get("/sections", endpoint="sections_list")
@endpoint("issues:read")
def sections_list():
    """The newsletter's sections in order: the topics readers choose and issues are built from."""
    with session_scope() as session:
        return {"data": [{"slug": t.slug, "name": t.name} for t in sections(session, settings())]}


schema(
    "ArticleView",
    {
        "type": "object",
        "required": ["id", "title", "url", "held", "tags"],
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "url": {"type": "string"},
            "author": {"type": "string"},
            "synopsis": {"type": "string"},
            "published_at": {"type": ["string", "null"], "format": "date-time"},
            "held": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    },
)
schema(
    "ArticlePatch",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "held": {"type": "boolean", "description": "true: kept out of the next issue"},
            "tags": {
                "type": "array",
                "maxItems": 20,
                "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,79}$"},
                "description": "replaces the tags; new slugs become tags (not sections)",
            },
        },
    },
)
_ARTICLE = {
    "description": "the article",
    "content": json_content(ref("ArticleView")),
    "headers": {"ETag": {"description": "the version, for If-Match", "schema": {"type": "string"}}},
}
document(
    PATH,
    {
        "get": operation(
            "listArticles",
            "List articles, newest first",
            scope="issues:read",
            parameters=[
                *PAGE_PARAMETERS,
                {
                    "name": "q",
                    "in": "query",
                    "description": "title or author contains",
                    "schema": {"type": "string"},
                },
                {"name": "tag", "in": "query", "schema": {"type": "string"}},
                {"name": "held", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
            ],
            responses={
                "200": {"description": "a page", "content": json_content(page_of(ref("ArticleView")))}
            },
            errors=(400,),
        )
    },
)
document(
    f"{PATH}/{{article_id}}",
    {
        "get": operation(
            "getArticle",
            "Read an article",
            scope="issues:read",
            parameters=[ARTICLE_ID],
            responses={"200": _ARTICLE},
            errors=(404,),
        ),  # fmt: skip
        "patch": operation(
            "updateArticle",
            "Hold back or release; replace the tags",
            scope="articles:write",
            parameters=[ARTICLE_ID],
            body=ref("ArticlePatch"),
            responses={"200": _ARTICLE},
            errors=(400, 404, 415, 422),
            if_match="optional",
        ),
    },
)
document(
    "/sections",
    {
        "get": operation(
            "listSections",
            "The sections in order (the topics readers choose)",
            scope="issues:read",
            responses={
                "200": {
                    "description": "the sections",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {
                                "data": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "slug": {"type": "string"},
                                            "name": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        }
                    ),
                }
            },
        )
    },
)
