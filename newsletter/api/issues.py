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
from newsletter.api.conventions import check_if_match, etag_of, json_object, only_fields, page_args, paged
from newsletter.api.problems import Problem
from newsletter.api.views import bp
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver, resume
from newsletter.delivery.send import cancel_sending, issue_counts, pause_issue
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
NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


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
    status = request.args.get("status", "")
    if status and status not in STATUSES:
        raise Problem(400, f"status must be one of {', '.join(STATUSES)}", kind="invalid", field="status")
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


@bp.get("/issues/<int:number>", endpoint="issue_read")
@endpoint("issues:read")
def issue_read(number: int):
    return _one(number)


def _article_plan(raw) -> list[tuple[int, str]]:
    if not isinstance(raw, list) or len(raw) > 500:
        raise Problem(400, "articles must be a list (at most 500) of {article_id, section}", kind="invalid",
                      field="articles")  # fmt: skip
    plan = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"article_id", "section"}:
            raise Problem(400, f"articles[{n}] must be an object with article_id and section", kind="invalid",
                          field="articles")  # fmt: skip
        article_id, section = item.get("article_id"), item.get("section")
        if not isinstance(article_id, int) or isinstance(article_id, bool) or not 1 <= article_id < 2**31:
            raise Problem(400, f"articles[{n}].article_id must be a positive integer", kind="invalid",
                          field="articles")  # fmt: skip
        if not isinstance(section, str) or not section:
            raise Problem(
                400, f"articles[{n}].section must be a section slug", kind="invalid", field="articles"
            )
        plan.append((article_id, section))
    return plan


@bp.patch("/issues/<int:number>", endpoint="issue_update")
@endpoint("issues:write")
def issue_update(number: int):
    """Change fields and/or the article order. If-Match is required (an editor may be editing too)."""
    body = json_object()
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
    fmt = request.args.get("format", "html")
    if fmt not in ("html", "text"):
        raise Problem(400, "format must be html or text", kind="invalid", field="format")
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
    body = json_object()
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
        raise Problem(400, str(exc), kind="invalid", field="addresses") from None
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
    only_fields(body, {"review_digest"})
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
    body = json_object()
    only_fields(body, {"at", "review_digest"})
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
        raise Problem(400, str(exc), kind="invalid", field="at") from None
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
    }
    return body, 200, {}


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
