"""The readers for token holders: list and search, read, trusted add, update,
unsubscribe, suppress, erase, and the streamed CSV export.

Faces over ``readers.service`` (the functions the editor's reader pages,
the preferences page and ``newsletter subscribers`` call), ``suppression``
and ``readers.csv_io.export_csv``.
"""

from __future__ import annotations

from sqlmodel import select

from newsletter import clock
from newsletter.api.auth import endpoint
from newsletter.api.conventions import (
    check_if_match,
    enum_arg,
    etag_of,
    json_object,
    one_rule,
    only_fields,
    page_args,
    paged,
)
from newsletter.api.openapi import TOPIC, document, json_content, operation, ref, schema
from newsletter.api.problems import Problem
from newsletter.api.views import bp
from newsletter.db import MAX_INTEGER, contains_any, session_scope
from newsletter.extensions import settings
from newsletter.models import SUBSCRIBER_STATUSES, Subscriber
from newsletter.readers import service
from newsletter.readers.csv_io import export_csv
from newsletter.suppression import suppress, suppression_reason
from newsletter.web import spooled_download, text_arg

CONSENT_SOURCES = list(service.SOURCES)


def _iso(value):
    return value.isoformat() if value else None


def reader_json(session, sub: Subscriber) -> dict:
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "topics": sub.topic_list,
        "timezone": sub.timezone,
        "suppressed": suppression_reason(session, sub.email) is not None,
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
        "confirmed_at": _iso(sub.confirmed_at),
        "unsubscribed_at": _iso(sub.unsubscribed_at),
        "consent": {"source": sub.consent_source, "at": _iso(sub.consent_at), "text": sub.consent_text},
    }


def _get(session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        raise Problem(404, f"there is no subscriber {subscriber_id}", kind="not-found")
    return sub


def _one(subscriber_id: int, status: int = 200):
    with session_scope() as session:
        body = reader_json(session, _get(session, subscriber_id))
    return body, status, {"ETag": etag_of(body)}


@bp.get("/subscribers", endpoint="subscribers_list", provide_automatic_options=False)
@endpoint("subscribers:read")
def subscribers_list():
    """Oldest first; ``status`` and ``q`` (address or name contains) filter."""
    limit, after = page_args()
    status = enum_arg("status", SUBSCRIBER_STATUSES)
    q = text_arg("q", 200)
    with session_scope() as session:
        query = select(Subscriber).order_by(Subscriber.id).limit(limit + 1)
        if status:
            query = query.where(Subscriber.status == status)
        if q:
            query = query.where(contains_any(q, Subscriber.email, Subscriber.name))
        if after is not None:
            query = query.where(Subscriber.id > after)
        rows = list(session.exec(query))
        items = [reader_json(session, r) for r in rows[:limit]]
    return paged(items, rows, limit, lambda r: r.id)


@endpoint("subscribers:write", idempotent=True)
def trusted_create():
    """A reader whose consent the caller collected: active at once (or pending
    with ``double_opt_in``), with the consent source and text on record."""
    body = json_object(ref("TrustedSubscribeRequest"))
    only_fields(
        body, {"email", "name", "topics", "timezone", "consent_source", "consent_text", "double_opt_in"}
    )
    if not isinstance(body.get("email"), str):
        raise Problem(400, "email is required", kind="invalid", field="email")
    source = body.get("consent_source")
    if source not in CONSENT_SOURCES:
        raise Problem(400, f"consent_source must be one of {', '.join(CONSENT_SOURCES)}", kind="invalid",
                      field="consent_source")  # fmt: skip
    text = body.get("consent_text")
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        raise Problem(400, "consent_text (1–2000 characters) says what the reader agreed to", kind="invalid",
                      field="consent_text")  # fmt: skip
    name, topics = body.get("name", ""), body.get("topics", [])
    if not isinstance(name, str):
        raise Problem(400, "name must be a string", kind="invalid", field="name")
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise Problem(400, "topics must be a list of section slugs", kind="invalid", field="topics")
    double = body.get("double_opt_in", False)
    if not isinstance(double, bool):
        raise Problem(400, "double_opt_in must be true or false", kind="invalid", field="double_opt_in")
    try:
        outcome = service.subscribe(
            settings(), email=body["email"], name=name, topics=topics, source=source,
            consent_text=text.strip(), double_opt_in=double, timezone=body.get("timezone"),
        )  # fmt: skip
    except service.InvalidInput as exc:
        raise Problem(422, str(exc), kind="refused", field=exc.field) from None
    if outcome.result in ("suppressed", "kept_unsubscribed"):
        reason = (
            "is on the suppression list"
            if outcome.result == "suppressed"
            else "unsubscribed; only they can return"
        )
        raise Problem(409, f"{outcome.email} {reason}", kind="conflict")
    body, _, headers = _one(outcome.subscriber_id)
    headers["Location"] = f"/api/v1/subscribers/{outcome.subscriber_id}"
    return (
        {**body, "result": outcome.result},
        201 if outcome.result in ("created", "resent") else 200,
        headers,
    )


@endpoint("subscribers:read")
def subscriber_read(subscriber_id: int):
    return _one(subscriber_id)


@endpoint("subscribers:write")
def subscriber_update(subscriber_id: int):
    """Name and topics; ``status: "unsubscribed"`` unsubscribes; ``suppressed: true`` suppresses."""
    body = json_object(ref("SubscriberPatch"))
    only_fields(body, {"name", "topics", "timezone", "status", "suppressed"})
    if "name" in body and not isinstance(body["name"], str):
        raise Problem(400, "name must be a string", kind="invalid", field="name")
    if "topics" in body and (
        not isinstance(body["topics"], list) or not all(isinstance(t, str) for t in body["topics"])
    ):
        raise Problem(400, "topics must be a list of section slugs", kind="invalid", field="topics")
    if "status" in body and body["status"] != "unsubscribed":
        raise Problem(400, 'status can only be set to "unsubscribed" (only readers themselves come back)',
                      kind="invalid", field="status")  # fmt: skip
    if "suppressed" in body and body["suppressed"] is not True:
        raise Problem(400, "suppressed can only be set to true (`newsletter subscribers unsuppress` lifts it)",
                      kind="invalid", field="suppressed")  # fmt: skip
    current, _, _ = _one(subscriber_id)
    check_if_match(etag_of(current), required=False)
    if "name" in body or "topics" in body or "timezone" in body:
        try:
            service.update_preferences(
                settings(), subscriber_id,
                name=body.get("name", current["name"]), topics=body.get("topics", current["topics"]),
                timezone=body.get("timezone"),
            )  # fmt: skip
        except service.InvalidInput as exc:
            raise Problem(422, str(exc), kind="refused", field=exc.field) from None
    with session_scope() as session:
        sub = _get(session, subscriber_id)
        if body.get("status") == "unsubscribed":
            service.unsubscribe(session, sub, "api")
        if body.get("suppressed"):
            suppress(session, sub.email, "manual", "suppressed through the API")
            sub.updated_at = clock.now()
            session.add(sub)
    return _one(subscriber_id)


@endpoint("subscribers:write")
def subscriber_erase(subscriber_id: int):
    """Erase the reader and every row about them; only a hash stays, suppressed."""
    with session_scope() as session:
        service.erase(session, _get(session, subscriber_id))
    return "", 204


one_rule(
    bp,
    "/subscribers/<int:subscriber_id>",
    "subscriber",
    {"GET": subscriber_read, "PATCH": subscriber_update, "DELETE": subscriber_erase},
)


@bp.get("/subscribers/export", endpoint="subscribers_export")
@endpoint("subscribers:read")
def subscribers_export():
    """Every reader as CSV (the CLI's and the editor's export), streamed."""
    status = enum_arg("status", SUBSCRIBER_STATUSES)
    name = f"subscribers-{clock.now():%Y%m%d-%H%M}.csv"
    with session_scope() as session:
        return spooled_download(
            lambda out: export_csv(session, out, status=status), mimetype="text/csv", filename=name
        )


# --- the OpenAPI document ---------------------------------------------------------------------

SUBSCRIBER_ID = {"name": "subscriber_id", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}}  # fmt: skip
_T = {"type": ["string", "null"], "format": "date-time"}
schema(
    "Subscriber",
    {
        "type": "object",
        "required": ["id", "email", "status", "topics", "suppressed"],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": list(SUBSCRIBER_STATUSES)},
            "topics": {"type": "array", "items": {"type": "string"}, "description": "empty: every section"},
            "timezone": {"type": "string", "description": "IANA zone; empty: the newsletter's own"},
            "suppressed": {"type": "boolean"},
            "created_at": _T,
            "updated_at": _T,
            "confirmed_at": _T,
            "unsubscribed_at": _T,
            "consent": {
                "type": "object",
                "properties": {"source": {"type": "string"}, "at": _T, "text": {"type": "string"}},
            },
            "result": {"type": "string", "description": "POST only: created, updated, already_active …"},
        },
    },
)
schema(
    "SubscriberPatch",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "name": {"type": "string", "maxLength": 200, "pattern": "^[^\\x00-\\x1f\\x7f\\u2028\\u2029]*$"},
            "topics": {"type": "array", "items": TOPIC, "description": "empty: every section"},
            "timezone": {
                "type": "string",
                "maxLength": 64,
                "description": "IANA zone (an unknown one: 422); empty: the newsletter's own",
            },
            "status": {"type": "string", "enum": ["unsubscribed"], "description": "only readers come back"},
            "suppressed": {
                "type": "boolean",
                "enum": [True],
                "description": "`subscribers unsuppress` lifts it",
            },
        },
    },
)
_READER = {
    "description": "the reader",
    "content": json_content(ref("Subscriber")),
    "headers": {"ETag": {"description": "the version, for If-Match", "schema": {"type": "string"}}},
}
document(
    "/subscribers/{subscriber_id}",
    {
        "get": operation(
            "getSubscriber",
            "Read a reader",
            scope="subscribers:read",
            parameters=[SUBSCRIBER_ID],
            responses={"200": _READER},
            errors=(404,),
        ),  # fmt: skip
        "patch": operation(
            "updateSubscriber",
            "Change name or topics; unsubscribe; suppress",
            scope="subscribers:write",
            parameters=[SUBSCRIBER_ID],
            body=ref("SubscriberPatch"),
            responses={"200": _READER},
            errors=(400, 404, 415, 422),
            if_match="optional",
        ),
        "delete": operation(
            "eraseSubscriber",
            "Erase the reader and every row about them (a hash stays, suppressed)",
            scope="subscribers:write",
            parameters=[SUBSCRIBER_ID],
            responses={"204": {"description": "erased"}},
            errors=(404,),
        ),
    },
)
document(
    "/subscribers/export",
    {
        "get": operation(
            "exportSubscribers",
            "Every reader as CSV, streamed",
            scope="subscribers:read",
            parameters=[
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(SUBSCRIBER_STATUSES)},
                }
            ],
            responses={
                "200": {
                    "description": "CSV with a header row",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                }
            },
            errors=(400,),
        )
    },
)
