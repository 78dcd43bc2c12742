"""``GET /api/v1/stats``: aggregate figures (the editor's dashboard's numbers):
readers by status, issues by status, the outcomes of the latest sent
issue, and the readers' zones (how many have none, how many unknown ones
were given and fell back). Counts only; nothing about any one reader."""

from __future__ import annotations

from sqlmodel import func, select

from newsletter import queries
from newsletter.api.auth import endpoint
from newsletter.api.openapi import document, json_content, operation, ref
from newsletter.api.views import bp
from newsletter.db import session_scope
from newsletter.feedback.stats import issue_outcomes
from newsletter.issues import states
from newsletter.models import Issue
from newsletter.readers.service import zone_summary


@bp.get("/stats", endpoint="stats")
@endpoint("stats:read")
def stats():
    with session_scope() as session:
        subscribers = queries.subscriber_counts(session)
        by_status = dict(session.exec(select(Issue.status, func.count()).group_by(Issue.status)).all())
        latest = session.exec(
            select(Issue).where(Issue.status == states.SENT).order_by(Issue.number.desc()).limit(1)
        ).first()
        last = {"number": latest.number, **issue_outcomes(session, latest.id)} if latest else None
        zones = zone_summary(session)
    return {
        "subscribers": subscribers,
        "issues": {status: int(by_status.get(status, 0)) for status in states.ALL},
        "last_sent_issue": last,
        "timezones": {"without": zones.without, "unknown_given": zones.unknown_given},
    }


document(
    "/stats",
    {
        "get": operation(
            "stats",
            "Aggregate figures: readers and issues by status, the latest sent issue's outcomes",
            scope="stats:read",
            responses={
                "200": {
                    "description": "the figures",
                    "content": json_content(
                        {
                            "type": "object",
                            "required": ["subscribers", "issues", "last_sent_issue", "timezones"],
                            "properties": {
                                "subscribers": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "issues": {"type": "object", "additionalProperties": {"type": "integer"}},
                                "last_sent_issue": {"anyOf": [{"type": "null"}, ref("Outcomes")]},
                                "timezones": {
                                    "type": "object",
                                    "description": "readers' zones (local-time delivery): active readers without "
                                    "one (they get the newsletter's time), and unknown zones given (not kept, "
                                    "counted: the fallback)",
                                    "required": ["without", "unknown_given"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "without": {"type": "integer", "minimum": 0},
                                        "unknown_given": {"type": "integer", "minimum": 0},
                                    },
                                },
                            },
                        }
                    ),
                }
            },
        )
    },
)
