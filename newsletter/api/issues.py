"""``/api/v1/issues``: the editorial cycle over JSON.

Each view is one call into the service the editor's page and the CLI use:
``issues.service`` (assemble, edit, approve, schedule, unschedule, cancel),
``issues.preview``, ``delivery.testsend``, ``delivery.deliver`` (send now —
the function the editor's "send now" calls), ``delivery.send`` (pause, stop)
and ``feedback.stats`` (outcomes). Refusals come back as problem details:
404 for an unknown issue, 409 for a state that does not allow the action.
"""

from __future__ import annotations

from datetime import datetime

from flask import g, request
from sqlmodel import select

from newsletter.api.auth import endpoint
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
)
from newsletter.api.openapi import (
    PAGE_PARAMETERS,
    TOPIC,
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
from newsletter.db import MAX_INTEGER, session_scope
from newsletter.delivery.deliver import deliver, resume
from newsletter.delivery.send import ZoneCounts, cancel_sending, issue_counts, pause_issue, zone_counts
from newsletter.delivery.testsend import MAX_TEST_ADDRESSES, send_test
from newsletter.extensions import settings
from newsletter.feedback.stats import issue_outcomes
from newsletter.issues import states
from newsletter.issues.preview import build_preview
from newsletter.issues.service import (
    EDITABLE_FIELDS,
    IssueError,
    approve_issue,
    assemble_issue,
    cancel_issue,
    issue_articles,
    require_issue,
    review_digest,
    schedule_issue,
    sections,
    set_issue_articles,
    unschedule_issue,
    update_issue,
)
from newsletter.models import Issue

STATUSES = list(states.ALL)
NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER},
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def issue_json(session, issue: Issue) -> dict:
    rows = issue_articles(session, issue)
    return {
        "number": issue.number,
        "status": issue.status,
        "theme": issue.theme,
        "title": issue.title,
        "subject": issue.subject,
        "preheader": issue.preheader,
        "intro": issue.intro,
        "articles": [
            {"article_id": a.id, "section": ia.section, "title": a.title, "url": a.url} for ia, a in rows
        ],
        "scheduled_for": _iso(issue.scheduled_for),
        "approved_at": _iso(issue.approved_at),
        "approved_by": issue.approved_by,
        "send_started_at": _iso(issue.send_started_at),
        "sent_at": _iso(issue.sent_at),
        "cancelled_at": _iso(issue.cancelled_at),
        "recipients": issue.recipients,
        "review_digest": review_digest(session, issue),
    }


def _one(number: int, status: int = 200):
    """The issue's representation with its ETag."""
    with session_scope() as session:
        body = issue_json(session, require_issue(session, number))
    return body, status, {"ETag": etag_of(body)}


def _summary(issue: Issue) -> dict:
    return {
        "number": issue.number,
        "status": issue.status,
        "title": issue.title,
        "subject": issue.subject,
        "scheduled_for": _iso(issue.scheduled_for),
        "sent_at": _iso(issue.sent_at),
    }


# --- list, assemble, read, update ---------------------------------------------------------


@bp.get("/issues", endpoint="issues_list")
@endpoint("issues:read")
def issues_list():
    limit, after = page_args()
    status = enum_arg("status", STATUSES)
    with session_scope() as session:
        query = select(Issue).order_by(Issue.number.desc()).limit(limit + 1)
        if status:
            query = query.where(Issue.status == status)
        if after is not None:
            query = query.where(Issue.number < after)
        rows = list(session.exec(query))
        items = [_summary(i) for i in rows]
    return paged(items, rows, limit, lambda i: i.number)


@bp.post("/issues", endpoint="issues_assemble")
@endpoint("issues:write", idempotent=True)
def issues_assemble():
    """Assemble the next issue from the week's articles (an open draft is returned, not doubled)."""
    result = assemble_issue(settings())
    if result.issue is None:
        raise Problem(409, result.message or "nothing to assemble", kind="nothing-to-assemble")
    body, _, headers = _one(result.issue.number)
    headers["Location"] = f"{request.root_path}/api/v1/issues/{result.issue.number}"
    return (
        {**body, "created": result.created, "message": result.message},
        201 if result.created else 200,
        headers,
    )


@endpoint("issues:read")
def issue_read(number: int):
    return _one(number)


def _article_plan(raw: list) -> list[tuple[int, str]]:
    """``articles`` of a PATCH (already checked against IssuePatch) as the service's plan."""
    return [(int(item["article_id"]), item["section"]) for item in raw]


@endpoint("issues:write")
def issue_update(number: int):
    """Change fields and/or the article order. If-Match is required (an editor may be editing too)."""
    body = json_object(ref("IssuePatch"))
    only_fields(body, set(EDITABLE_FIELDS) | {"articles"})
    fields = {}
    for name in EDITABLE_FIELDS:
        if name in body:
            if not isinstance(body[name], str):
                raise Problem(400, f"{name} must be a string", kind="invalid", field=name)
            fields[name] = body[name]
    plan = _article_plan(body["articles"]) if "articles" in body else None
    current, _, _ = _one(number)
    check_if_match(etag_of(current), required=True)
    try:
        if fields:
            update_issue(number, **fields)
        if plan is not None:
            set_issue_articles(number, plan)
    except IssueError as exc:
        if isinstance(exc, LookupError):
            raise
        with session_scope() as session:
            editable = require_issue(session, number).status in states.EDITABLE
        raise Problem(
            422 if editable else 409, str(exc), kind="invalid" if editable else "conflict"
        ) from None
    return _one(number)


one_rule(bp, "/issues/<int:number>", "issue", {"GET": issue_read, "PATCH": issue_update})


# --- preview and test -------------------------------------------------------------------


def _topics(number: int) -> str | None:
    raw = ",".join(request.values.getlist("topics")) if request.method == "GET" else ""
    return _clean_topics(raw.split(","))


def _clean_topics(chosen) -> str | None:
    with session_scope() as session:
        known = [t.slug for t in sections(session, settings())]
    wanted = sorted({t.strip() for t in chosen if isinstance(t, str) and t.strip()})
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise Problem(400, f"unknown topic {unknown[0][:80]!r}; topics are the section slugs: {', '.join(known)}",
                      kind="invalid", field="topics")  # fmt: skip
    return ",".join(wanted) or None


@bp.get("/issues/<int:number>/preview", endpoint="issue_preview")
@endpoint("issues:read")
def issue_preview(number: int):
    """The email as a reader of ``topics`` gets it (HTML or text), with the lint findings."""
    fmt = enum_arg("format", ("html", "text")) or "html"
    with session_scope() as session:
        require_issue(session, number)
    preview = build_preview(settings(), number, topics=_topics(number))
    return {
        "number": number,
        "topics": [t for t in (preview.variant or "").split(",") if t],
        "subject": preview.message.subject,
        "format": fmt,
        "body": preview.message.html if fmt == "html" else preview.message.text,
        "size_bytes": len(preview.message.html.encode("utf-8")),
        "lint": [{"level": f.level, "code": f.code, "message": f.message} for f in preview.lint],
    }


@bp.post("/issues/<int:number>/test", endpoint="issue_test")
@endpoint("issues:send", idempotent=True)
def issue_test(number: int):
    body = json_object(TEST_BODY)
    only_fields(body, {"addresses", "topics"})
    addresses = body.get("addresses")
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
        raise Problem(
            400, "addresses must be a non-empty list of email addresses", kind="invalid", field="addresses"
        )
    if len(addresses) > MAX_TEST_ADDRESSES:
        raise Problem(400, f"at most {MAX_TEST_ADDRESSES} addresses", kind="invalid", field="addresses")
    topics = body.get("topics", [])
    if not isinstance(topics, list):
        raise Problem(400, "topics must be a list of section slugs", kind="invalid", field="topics")
    with session_scope() as session:
        require_issue(session, number)
    try:
        results = send_test(settings(), number, addresses, topics=_clean_topics(topics))
    except ValueError as exc:
        raise Problem(422, str(exc), kind="refused", field="addresses") from None
    except OSError as exc:
        raise Problem(502, f"the mail server did not take the test: {exc}", kind="transport") from None
    return {
        "results": [
            {
                "address": a,
                "status": r.status,
                "detail": str(getattr(r, "detail", "") or getattr(r, "error", "") or ""),
            }
            for a, r in zip(addresses, results, strict=False)
        ]
    }


# --- lifecycle -------------------------------------------------------------------------


def _optional_body() -> dict:
    if not request.get_data():
        return {}
    return json_object()


@bp.post("/issues/<int:number>/approve", endpoint="issue_approve")
@endpoint("issues:write", idempotent=True)
def issue_approve(number: int):
    body = _optional_body()
    check_schema(body, ACTION_BODY)
    seen = body.get("review_digest")
    if seen is not None and not isinstance(seen, str):
        raise Problem(400, "review_digest must be a string", kind="invalid", field="review_digest")
    approve_issue(number, _by(), seen=seen)
    return _one(number)


def _by() -> str:
    return g.api_principal.actor


@bp.post("/issues/<int:number>/schedule", endpoint="issue_schedule")
@endpoint("issues:send", idempotent=True)
def issue_schedule(number: int):
    body = json_object(SCHEDULE_BODY)
    raw = body.get("at")
    if not isinstance(raw, str):
        raise Problem(400, "at must be an ISO 8601 time with an offset, such as 2030-01-07T08:00:00+00:00",
                      kind="invalid", field="at")  # fmt: skip
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"{raw[:60]!r} is not an ISO 8601 time", kind="invalid", field="at") from None
    if when.tzinfo is None:
        raise Problem(400, "at needs an offset (such as +00:00)", kind="invalid", field="at")
    try:
        schedule_issue(number, when, by=_by(), seen=body.get("review_digest") or None)
    except IssueError as exc:
        if isinstance(exc, LookupError) or "not in the future" not in str(exc):
            raise
        raise Problem(422, str(exc), kind="refused", field="at") from None
    return _one(number)


@bp.post("/issues/<int:number>/unschedule", endpoint="issue_unschedule")
@endpoint("issues:send", idempotent=True)
def issue_unschedule(number: int):
    unschedule_issue(number)
    return _one(number)


@bp.post("/issues/<int:number>/cancel", endpoint="issue_cancel")
@endpoint("issues:send", idempotent=True)
def issue_cancel(number: int):
    """Cancel an unsent issue, or stop one that is sending (the editor's cancel does the same)."""
    with session_scope() as session:
        status = require_issue(session, number).status
    (cancel_sending if status in states.IN_FLIGHT else cancel_issue)(number)
    return _one(number)


@bp.post("/issues/<int:number>/send", endpoint="issue_send")
@endpoint("issues:send", idempotent=True)
def issue_send(number: int):
    """Send now: the same call as the editor's "send now"; the senders deliver in the background."""
    deliver(settings(), number, here=False, continue_started=False)
    body, _, headers = _status(number)
    return body, 202, headers


@bp.post("/issues/<int:number>/pause", endpoint="issue_pause")
@endpoint("issues:send", idempotent=True)
def issue_pause(number: int):
    pause_issue(number)
    return _status(number)


@bp.post("/issues/<int:number>/resume", endpoint="issue_resume")
@endpoint("issues:send", idempotent=True)
def issue_resume(number: int):
    resume(settings(), number)
    return _status(number)


# --- status and outcomes ------------------------------------------------------------------


def _status(number: int):
    with session_scope() as session:
        issue = require_issue(session, number)
        counts = issue_counts(session, issue.id)
        outcomes = issue_outcomes(session, issue.id)
    done = counts.get("sent", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    body = {
        "number": number,
        "status": issue.status,
        "finished": issue.status in states.FINISHED,
        "counts": {k: int(v) for k, v in counts.items()},
        "done": done,
        "outcomes": outcomes,
        "zones": [_zone_json(z) for z in zone_counts(number)],
    }
    return body, 200, {}


def _zone_json(z: ZoneCounts) -> dict:
    """One zone of a local-time send, as ``issue status`` prints it."""
    return {
        "zone": z.zone,
        "sent": z.sent,
        "scheduled": z.scheduled,
        "scheduled_for": _iso(z.due) if z.scheduled else None,
        "due": z.other,
        "failed": z.failed,
        "skipped": z.skipped,
    }


@bp.get("/issues/<int:number>/status", endpoint="issue_status")
@endpoint("issues:read")
def issue_status(number: int):
    return _status(number)


@bp.get("/issues/<int:number>/outcomes", endpoint="issue_outcomes")
@endpoint("issues:read")
def issue_outcomes_view(number: int):
    with session_scope() as session:
        issue = require_issue(session, number)
        return {"number": number, "status": issue.status, **issue_outcomes(session, issue.id)}


# --- the OpenAPI document ---------------------------------------------------------------------

_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": "string", "maxLength": 300}
schema(
    "IssueArticle",
    {
        "type": "object",
        "required": ["article_id", "section"],
        "additionalProperties": False,
        "properties": {
            "article_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            "section": {**TOPIC, "description": "a section slug (GET /sections)"},
        },
    },
)
schema(
    "Issue",
    {
        "type": "object",
        "required": ["number", "status", "title", "subject", "articles", "review_digest"],
        "properties": {
            "number": {"type": "integer"},
            "status": {"type": "string", "enum": STATUSES},
            "theme": {"type": "string"},
            "title": {"type": "string"},
            "subject": {"type": "string"},
            "preheader": {"type": "string"},
            "intro": {"type": "string", "description": "Markdown"},
            "articles": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "article_id": {"type": "integer"},
                        "section": {"type": "string"},
                        "title": {"type": "string"},
                        "url": {"type": "string"},
                    },
                },
            },
            "scheduled_for": _TIME,
            "approved_at": _TIME,
            "approved_by": {"type": ["string", "null"]},
            "send_started_at": _TIME,
            "sent_at": _TIME,
            "cancelled_at": _TIME,
            "recipients": {"type": "integer"},
            "review_digest": {
                "type": "string",
                "description": "fingerprint of the content as read; pass it to approve to refuse approving "
                "content changed since",
            },
            "created": {"type": "boolean", "description": "POST /issues only: a new issue was made"},
            "message": {"type": "string", "description": "POST /issues only"},
        },
    },
)
schema(
    "IssueSummary",
    {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "status": {"type": "string", "enum": STATUSES},
            "title": {"type": "string"},
            "subject": {"type": "string"},
            "scheduled_for": _TIME,
            "sent_at": _TIME,
        },
    },
)
schema(
    "IssuePatch",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "theme": {**_TEXT, "maxLength": 200, "minLength": 1, "pattern": VISIBLE},
            "title": {**_TEXT, "minLength": 1, "pattern": VISIBLE},
            "subject": {**_TEXT, "description": "empty: the title"},
            "preheader": _TEXT,
            "intro": {"type": "string", "maxLength": 20000, "description": "Markdown"},
            "articles": {
                "type": "array",
                "maxItems": 500,
                "items": ref("IssueArticle"),
                "description": "the whole list, in reading order; each article once",
            },
        },
    },
)
_OUTCOMES = {
    "type": "object",
    "properties": {
        k: {"type": "integer"}
        for k in (
            "total",
            "pending",
            "sent",
            "delivered",
            "failed",
            "skipped",
            "bounced",
            "hard_bounced",
            "soft_bounced",
            "complained",
            "unsubscribed",
            "clicks",
        )
    }  # fmt: skip
    | {"complaint_rate": {"type": "number"}, "bounce_rate": {"type": "number"}},
}
schema("Outcomes", _OUTCOMES)
_COUNT = {"type": "integer", "minimum": 0}
schema(
    "ZoneCounts",
    {
        "type": "object",
        "description": "a local-time send's readers in one time zone (each gets the issue at the slot's "
        "wall-clock time there)",
        "required": ["zone", "sent", "scheduled", "scheduled_for", "due", "failed", "skipped"],
        "additionalProperties": False,
        "properties": {
            "zone": {
                "type": "string",
                "description": "IANA name; the newsletter's own for readers without one",
            },
            "sent": _COUNT,
            "scheduled": {**_COUNT, "description": "readers whose moment has not come yet"},
            "scheduled_for": {**_TIME, "description": "when the scheduled readers get it (null: none left)"},
            "due": {
                **_COUNT,
                "description": "readers whose moment has come, not yet sent: on the wire or retrying",
            },
            "failed": _COUNT,
            "skipped": _COUNT,
        },
    },
)
schema(
    "IssueStatus",
    {
        "type": "object",
        "required": ["number", "status", "finished", "counts", "done", "outcomes", "zones"],
        "properties": {
            "number": {"type": "integer"},
            "status": {"type": "string", "enum": STATUSES},
            "finished": {"type": "boolean"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "done": {"type": "integer"},
            "outcomes": ref("Outcomes"),
            "zones": {
                "type": "array",
                "items": ref("ZoneCounts"),
                "description": "local-time delivery: sent and still-scheduled readers by zone, the first "
                "zone (east) first; empty for a send to everyone at once",
            },
        },
    },
)
schema(
    "Preview",
    {
        "type": "object",
        "required": ["subject", "format", "body", "lint"],
        "properties": {
            "number": {"type": "integer"},
            "topics": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"},
            "format": {"type": "string", "enum": ["html", "text"]},
            "body": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "lint": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "level": {"type": "string", "enum": ["error", "warning", "info"]},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
)

SCHEDULE_BODY = {
    "type": "object",
    "required": ["at"],
    "additionalProperties": False,
    "properties": {
        "at": {"type": "string", "format": "date-time", "description": "with an offset; in the future"},
        "review_digest": {"type": "string"},
    },
}
TEST_BODY = {
    "type": "object",
    "required": ["addresses"],
    "additionalProperties": False,
    "properties": {
        "addresses": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TEST_ADDRESSES,
            "items": {"type": "string", "format": "email", "maxLength": 320},
        },
        "topics": {"type": "array", "items": TOPIC},
    },
}
_ISSUE = {"description": "the issue", "content": json_content(ref("Issue")), "headers": {
    "ETag": {"description": "the version, for If-Match", "schema": {"type": "string"}}}}  # fmt: skip
_STATUS = {"description": "the send's progress and outcomes", "content": json_content(ref("IssueStatus"))}
ACTION_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"review_digest": {"type": "string"}},
}


def _lifecycle(name: str, summary: str, scope: str, ok: dict, *, description: str = "", body=None) -> dict:
    return {
        "post": operation(
            f"{name}Issue",
            summary,
            scope=scope,
            description=description,
            parameters=[NUMBER],
            body=body,
            body_required=body is not None and name == "schedule",
            responses=ok,
            errors=(404, 409, 415, 422) if name == "schedule" else (404, 409, 415),
            idempotent=True,
        )
    }


document(
    "/issues",
    {
        "get": operation(
            "listIssues",
            "List issues, newest first",
            scope="issues:read",
            parameters=[
                *PAGE_PARAMETERS,
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
            ],
            responses={
                "200": {"description": "a page", "content": json_content(page_of(ref("IssueSummary")))}
            },
            errors=(400,),
        ),
        "post": operation(
            "assembleIssue",
            "Assemble the next issue from the week's articles",
            scope="issues:write",
            description="An open draft is returned (200) instead of a second one being made (201).",
            responses={"201": _ISSUE, "200": _ISSUE},
            errors=(409,),
            idempotent=True,
        ),
    },
)
document(
    "/issues/{number}",
    {
        "get": operation(
            "getIssue",
            "Read an issue",
            scope="issues:read",
            parameters=[NUMBER],
            responses={"200": _ISSUE},
            errors=(404,),
        ),  # fmt: skip
        "patch": operation(
            "updateIssue",
            "Change fields and/or the article order",
            scope="issues:write",
            description="If-Match is required: an editor may be editing the same issue. Editing an approved or "
            "scheduled issue returns it to draft.",
            parameters=[NUMBER],
            body=ref("IssuePatch"),
            responses={"200": _ISSUE},
            errors=(400, 404, 409, 415, 422),
            if_match="required",
        ),
    },
)
document(
    "/issues/{number}/preview",
    {
        "get": operation(
            "previewIssue",
            "The email as a reader of the given topics gets it, with the lint findings",
            scope="issues:read",
            parameters=[
                NUMBER,
                {
                    "name": "topics",
                    "in": "query",
                    "description": "section slugs, comma-separated (none: every section)",
                    "style": "form",
                    "explode": False,
                    "schema": {"type": "array", "items": TOPIC},
                },
                {
                    "name": "format",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["html", "text"], "default": "html"},
                },
            ],  # fmt: skip
            responses={"200": {"description": "the preview", "content": json_content(ref("Preview"))}},
            errors=(400, 404),
        )
    },
)
document(
    "/issues/{number}/test",
    {
        "post": operation(
            "testIssue",
            "Send a test (subject starts with [TEST]) to a few addresses",
            scope="issues:send",
            parameters=[NUMBER],
            body=TEST_BODY,
            responses={
                "200": {
                    "description": "one result per address",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {"results": {"type": "array", "items": {"type": "object"}}},
                        }
                    ),
                },
                "502": problem(502, "the mail server or provider did not take the test"),
            },
            errors=(404, 415, 422),
            idempotent=True,
        )
    },
)
document("/issues/{number}/approve", _lifecycle("approve", "Approve a draft", "issues:write", {"200": _ISSUE},
         body=ACTION_BODY))  # fmt: skip
document(
    "/issues/{number}/schedule",
    _lifecycle(
        "schedule",
        "Send at a time (approves a draft); the scheduler sends it then",
        "issues:send",
        {"200": _ISSUE},
        body=SCHEDULE_BODY,
    ),
)
document("/issues/{number}/unschedule", _lifecycle("unschedule", "Take off its time (stays approved)",
         "issues:send", {"200": _ISSUE}))  # fmt: skip
document("/issues/{number}/cancel", _lifecycle("cancel", "Cancel, or stop a send in progress", "issues:send",
         {"200": _ISSUE}))  # fmt: skip
document(
    "/issues/{number}/send",
    _lifecycle(
        "send",
        "Send now",
        "issues:send",
        {"202": {**_STATUS, "description": "sending has started"}},
        description="The same call as the editor's “send now”. With an Idempotency-Key a retry returns this "
        "answer again and never starts a second send; without one, a second send of a sending issue is a 409.",
    ),
)
document("/issues/{number}/pause", _lifecycle("pause", "Pause a send", "issues:send", {"200": _STATUS}))
document(
    "/issues/{number}/resume", _lifecycle("resume", "Resume a paused send", "issues:send", {"200": _STATUS})
)
document(
    "/issues/{number}/status",
    {
        "get": operation(
            "issueStatus",
            "Progress of the send and its outcomes",
            scope="issues:read",
            parameters=[NUMBER],
            responses={"200": _STATUS},
            errors=(404,),
        )
    },  # fmt: skip
)
document(
    "/issues/{number}/outcomes",
    {
        "get": operation(
            "issueOutcomes",
            "What happened, counted (no per-reader tracking)",
            scope="issues:read",
            parameters=[NUMBER],
            responses={"200": {"description": "the counts", "content": json_content(ref("Outcomes"))}},
            errors=(404,),
        )
    },
)
