"""Issues: numbering, assembly from tagged articles, and the editorial lifecycle.

One place for each action; the CLI, the editor views and the scheduler call
these. Functions taking ``settings`` open their own unit of work.

Assembly rules (docs/operating.md, "Assembly", has the long form):
- sections are the tags listed in NEWSLETTER_SECTIONS, in that order, or else
  every tag marked ``is_section``, by ``position``, or else (a fresh
  installation where nobody chose) the most-used tags (``content.sections``);
- the window runs from the previous (not cancelled) issue's ``window_end`` —
  or seven days back for the first issue — to now: ``start < published_at <= end``;
- eligible articles carry a section tag, are not held, and are in no earlier
  issue that was not cancelled;
- an article tagged with several sections goes to the first of them (in
  section order) that still has room under NEWSLETTER_SECTION_LIMIT; the
  total NEWSLETTER_ISSUE_LIMIT is filled round-robin across sections, newest
  first, so one busy section cannot crowd out the others;
- numbers are sequential and never reused (a cancelled number stays taken),
  starting at NEWSLETTER_FIRST_ISSUE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import clock
from newsletter.config import Settings
from newsletter.content import sections as section_choice
from newsletter.content.sanitise import clean_text, neutralise
from newsletter.db import session_scope
from newsletter.issues import states
from newsletter.models import Article, ArticleTag, Issue, IssueArticle, IssueRender, Tag
from newsletter.rendering import wording
from newsletter.rendering.lint import LintFinding, content_findings
from newsletter.rendering.view import content_digest, content_fields, issue_content, snapshot_of

DEFAULT_WINDOW = timedelta(days=7)
EDITABLE_FIELDS = ("theme", "title", "subject", "preheader", "intro")
INTRO_MAX = 20_000


class IssueError(ValueError):
    """An action that the issue's state or the input does not allow; the message says why."""


class IssueNotFound(IssueError, LookupError):
    pass


@dataclass
class AssembleResult:
    issue: Issue | None
    created: bool
    message: str
    hint: str = ""  # how to do better next time (sections nobody chose yet)


# --- reading -------------------------------------------------------------------


def sections(session: Session, settings: Settings) -> list[Tag]:
    """The ordered sections (``content.sections.current``: NEWSLETTER_SECTIONS,
    else the tags chosen as sections, else the most-used tags)."""
    return section_choice.current(session, settings).tags


def get_issue(session: Session, number: int) -> Issue | None:
    return session.exec(select(Issue).where(Issue.number == number)).first()


def require_issue(session: Session, number: int) -> Issue:
    issue = get_issue(session, number)
    if issue is None:
        raise IssueNotFound(f"there is no issue {number}")
    return issue


def issue_articles(session: Session, issue: Issue) -> list[tuple[IssueArticle, Article]]:
    return list(
        session.exec(
            select(IssueArticle, Article)
            .join(Article, Article.id == IssueArticle.article_id)
            .where(IssueArticle.issue_id == issue.id)
            .order_by(IssueArticle.position)
        ).all()
    )


def list_issues(session: Session, *, status: str | None = None, limit: int = 50) -> list[Issue]:
    """The newest issues first (``status`` one of ``states.ALL`` or None)."""
    query = select(Issue).order_by(Issue.number.desc()).limit(limit)
    if status:
        query = query.where(Issue.status == status)
    return list(session.exec(query).all())


def send_time(text: str, zone: str) -> datetime:
    """An aware time from "2026-12-07 08:00" read in ``zone`` (or an ISO 8601
    time with its own offset). A wall-clock time that does not exist in the
    zone (skipped by a DST change) is refused; one that happens twice means
    the first."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise IssueError(f"{zone!r} is not an IANA time zone such as Europe/Berlin") from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("T", " "))
    except ValueError:
        raise IssueError(f"{text!r} is not a time like 2026-12-07 08:00") from None
    if moment.tzinfo is not None:
        return moment
    aware = moment.replace(tzinfo=tz, fold=0)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise IssueError(f"{moment:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks skip it)")
    return aware


def next_number(session: Session, settings: Settings) -> int:
    highest = session.exec(select(func.max(Issue.number))).one()
    return max(settings.first_issue, (highest or 0) + 1)


def previous_issue(session: Session) -> Issue | None:
    return session.exec(
        select(Issue).where(Issue.status != states.CANCELLED).order_by(Issue.number.desc())
    ).first()


# --- assembly ------------------------------------------------------------------


def default_theme(section_names: list[str], year: int) -> str:
    """ "AI Ethics and Data 2026": the (up to) two biggest sections and the year."""
    names = section_names[:2]
    return f"{' and '.join(names)} {year}" if names else str(year)


def unique_theme(session: Session, section_names: list[str], today: datetime) -> str:
    """The default theme, made different from every earlier issue's: another pair
    of the biggest sections, or else the date ("AI Agents and Data, 7 Dec 2026")."""
    taken = set(session.exec(select(Issue.theme).where(Issue.status != states.CANCELLED)).all())
    names = section_names
    pairs = [names[:2]]  # the two biggest; then the biggest with each smaller one; then the next two
    if len(names) > 2:
        pairs += [[names[0], other] for other in names[2:]] + [names[1:3]]
    for pair in pairs:
        theme = default_theme(pair, today.year)
        if theme not in taken:
            return theme
    base = " and ".join(names[:2]) if names else "The week"
    return f"{base}, {today.day} {today:%b %Y}"


def same_title(session: Session, issue: Issue) -> Issue | None:
    """Another issue (not cancelled) with ``issue``'s title or theme: the editor is told."""
    return session.exec(
        select(Issue).where(
            Issue.id != issue.id,
            Issue.status != states.CANCELLED,
            (Issue.title == issue.title) | (Issue.theme == issue.theme),
        )
    ).first()


def pick_articles(
    session: Session, settings: Settings, section_tags: list[Tag], start: datetime, end: datetime
) -> list[tuple[Article, Tag]]:
    """The articles of the next issue with their section, in issue order."""
    if not section_tags:
        return []
    rank = {t.id: i for i, t in enumerate(section_tags)}
    used = (
        select(IssueArticle.article_id)
        .join(Issue, Issue.id == IssueArticle.issue_id)
        .where(Issue.status != states.CANCELLED)
    )
    rows = session.exec(
        select(Article, ArticleTag.tag_id)
        .join(ArticleTag, ArticleTag.article_id == Article.id)
        .where(
            ArticleTag.tag_id.in_(list(rank)),
            Article.published_at > start,
            Article.published_at <= end,
            Article.held == False,  # noqa: E712 - SQL expression
            Article.id.not_in(used),
        )
        .order_by(Article.published_at.desc(), Article.id.desc())
    ).all()
    tagged: dict[int, tuple[Article, list[int]]] = {}
    for article, tag_id in rows:
        tagged.setdefault(article.id, (article, []))[1].append(tag_id)
    per_section: list[list[Article]] = [[] for _ in section_tags]
    for article, tag_ids in tagged.values():  # newest first (dict keeps query order)
        for tag_id in sorted(tag_ids, key=rank.__getitem__):
            bucket = per_section[rank[tag_id]]
            if len(bucket) < settings.section_limit:
                bucket.append(article)
                break
    # Fill the total limit round-robin so every section is represented.
    chosen: set[int] = set()
    for depth in range(settings.section_limit):
        for bucket in per_section:
            if len(chosen) >= settings.issue_limit:
                break
            if depth < len(bucket):
                chosen.add(bucket[depth].id)
    return [(a, section_tags[i]) for i, bucket in enumerate(per_section) for a in bucket if a.id in chosen]


def assemble_issue(
    settings: Settings, *, now: datetime | None = None, slot_at: datetime | None = None
) -> AssembleResult:
    """Assemble the next issue as a draft; idempotent per slot.

    ``slot_at`` is the weekly send slot (the scheduler passes it). Without a
    slot, an open draft is returned instead of making a second one. With a
    slot, the issue already made for it is returned; an open draft without
    a slot is adopted for it.
    """
    now = now or clock.now()
    try:
        with session_scope() as session:
            return _assemble(session, settings, now, slot_at)
    except IntegrityError:
        # Another process assembled the same slot (or took the number) first.
        with session_scope() as session:
            existing = _existing_for(session, slot_at)
            if existing is None:
                raise
            return AssembleResult(
                existing, False, f"{existing.label} was assembled at the same time by another process"
            )


def _existing_for(session: Session, slot_at: datetime | None) -> Issue | None:
    if slot_at is not None:
        found = session.exec(select(Issue).where(Issue.slot_at == slot_at)).first()
        if found is not None:
            return found
    return session.exec(
        select(Issue)
        .where(Issue.status == states.DRAFT, Issue.slot_at.is_(None))
        .order_by(Issue.number.desc())
    ).first()


def _assemble(
    session: Session, settings: Settings, now: datetime, slot_at: datetime | None
) -> AssembleResult:
    existing = _existing_for(session, slot_at)
    if existing is not None:
        if slot_at is not None and existing.slot_at is None:
            existing.slot_at = slot_at
            existing.updated_at = clock.now()
            session.add(existing)
            return AssembleResult(
                existing, False, f"{existing.label} (an open draft) is the issue for this slot"
            )
        if slot_at is not None:
            return AssembleResult(existing, False, f"{existing.label} was already assembled for this slot")
        return AssembleResult(
            existing,
            False,
            f"{existing.label} is already an open draft: edit it, or cancel it to assemble again",
        )
    previous = previous_issue(session)
    start = previous.window_end if previous else now - DEFAULT_WINDOW
    choice = section_choice.current(session, settings)
    section_tags = choice.tags
    hint = ""
    if choice.source == "derived":
        hint = f"No sections are chosen yet, so the issue uses {choice.describe()}. {section_choice.HOW_TO_CHOOSE}"
    if choice.missing:
        hint = f"NEWSLETTER_SECTIONS names tags no article has yet: {', '.join(choice.missing)}."
    if not section_tags:
        reason = (
            "no article has a tag yet"
            if choice.source == "derived"
            else "none of NEWSLETTER_SECTIONS exists yet"
        )
        return AssembleResult(
            None, False, f"No sections ({reason}): no issue assembled.", hint or section_choice.HOW_TO_CHOOSE
        )
    picked = pick_articles(session, settings, section_tags, start, now) if start < now else []
    if not picked:
        return AssembleResult(
            None,
            False,
            f"No new articles between {start:%Y-%m-%d %H:%M} and {now:%Y-%m-%d %H:%M} UTC: no issue assembled.",
            hint,
        )
    counts = Counter(tag.slug for _, tag in picked)
    order = {t.slug: i for i, t in enumerate(section_tags)}
    names = {t.slug: t.name for t in section_tags}
    top = sorted(counts, key=lambda slug: (-counts[slug], order[slug]))
    theme = unique_theme(session, [names[s] for s in top], now.astimezone(settings.tz))[:200]
    number = next_number(session, settings)
    label = f"Issue {number:03d}"
    title = f"{label}: {theme}"[:300]
    issue = Issue(
        number=number,
        theme=theme,
        title=title,
        subject=title,
        preheader=wording.DEFAULT_PREHEADER,  # filled per variant when rendered (rendering.wording)
        intro=wording.DEFAULT_INTRO,
        status=states.DRAFT,
        window_start=start,
        window_end=now,
        slot_at=slot_at,
    )
    session.add(issue)
    session.flush()
    for position, (article, tag) in enumerate(picked):
        session.add(
            IssueArticle(issue_id=issue.id, article_id=article.id, section=tag.slug, position=position)
        )
    session.flush()
    return AssembleResult(
        issue,
        True,
        f"{title}: {len(picked)} articles in {len(counts)} sections, draft ready for review",
        hint,
    )


# --- lifecycle -------------------------------------------------------------------
#
# Every status change is a move of ``issues.states`` (one conditional UPDATE);
# a move that loses a race raises IssueError and the unit of work rolls back.


def _move(session: Session, issue: Issue, values: dict) -> Issue:
    """Move ``issue`` from the status that was read to ``values["status"]``,
    writing ``values`` in the same conditional UPDATE, so an issue that a
    scheduler tick or "send now" started meanwhile is never put back (and
    sent twice)."""
    values = dict(values)
    target = values.pop("status")
    transition = next(
        (t for t in states.TRANSITIONS if t.target == target and issue.status in t.sources), None
    )
    if transition is None:
        raise IssueError(f"{issue.label} is {issue.status} and cannot become {target}")
    if not states.move(session, issue.id, states.narrowed(transition, issue.status), **values):
        raise IssueError(f"{issue.label} changed meanwhile (another editor or the scheduler); look again")
    session.refresh(issue)
    return issue


def _withdraw_renders(session: Session, issue: Issue) -> None:
    """Changing content withdraws an approval: what is approved is what is sent."""
    for render in session.exec(select(IssueRender).where(IssueRender.issue_id == issue.id)).all():
        session.delete(render)
    session.execute(
        update(IssueArticle).where(IssueArticle.issue_id == issue.id).values(snapshot=None),
        execution_options={"synchronize_session": False},
    )


# --- review: what is approved is what is sent ------------------------------------------


def content_problems(session: Session, issue: Issue) -> list[LintFinding]:
    """Errors in the issue's content that forbid approving or sending it:
    any field that reads as a personal-link marker, in any encoding."""
    return content_findings(content_fields(issue, issue_content(session, issue)))


def review_digest(session: Session, issue: Issue) -> str:
    """The fingerprint of what the issue shows now (``approve_issue``'s ``seen``)."""
    return content_digest(issue, issue_content(session, issue))


def changed_since_approval(session: Session, issue: Issue) -> list[Article]:
    """Articles of an approved issue whose live row differs from the snapshot
    that will be sent (the editor sees a notice: edit the issue to take them)."""
    snapshots = {
        row.link.article_id: row.article for row in issue_content(session, issue) if row.from_snapshot
    }
    if not snapshots:
        return []
    live = session.exec(select(Article).where(Article.id.in_(list(snapshots)))).all()
    return [a for a in live if _shown(a) != _shown(snapshots[a.id])]


def _shown(article: Article) -> tuple:
    return (article.title, article.url, article.synopsis, article.author, article.reading_minutes,
            article.image_url, article.image_alt)  # fmt: skip


def _review(session: Session, issue: Issue, seen: str | None) -> None:
    """Check the content an approval is about to freeze, then keep it: refuse
    marker-like content and content that changed since the editor looked
    (``seen``), and write each article's snapshot in the approval's transaction."""
    content = issue_content(session, issue)
    if not content:
        raise IssueError(f"{issue.label} has no articles")
    problems = content_findings(content_fields(issue, content))
    if problems:
        listed = "; ".join(p.message for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise IssueError(f"{issue.label} cannot be approved: {listed}{more}")
    if seen is not None and seen != content_digest(issue, content):
        raise IssueError(
            f"{issue.label} changed since you opened it (an article was updated or edited): "
            "look at it again before approving"
        )
    for row in content:
        if not row.from_snapshot:
            row.link.snapshot = snapshot_of(row.article, row.section_name, row.tags)
            session.add(row.link)


def _edit(session: Session, issue: Issue, values: dict) -> None:
    """The issue back to draft with ``values``, as the first statement of an
    edit: the row stays locked until the edit commits, so a send cannot start
    in between, and an edit that comes after a start is refused."""
    if issue.status not in states.EDITABLE:
        raise IssueError(f"{issue.label} is {issue.status} and can no longer be edited")
    _move(
        session,
        issue,
        {
            "status": states.DRAFT,
            "approved_at": None,
            "approved_by": None,
            "scheduled_for": None,
            "frozen_at": None,
            **values,
        },
    )
    _withdraw_renders(session, issue)


def approve_issue(number: int, by: str, *, seen: str | None = None) -> Issue:
    """Approve a draft: its content is checked (no marker-like text; unchanged
    since ``seen``, the ``review_digest`` the editor's page showed) and its
    articles are snapshotted, so what is approved is what is sent."""
    with session_scope() as session:
        issue = require_issue(session, number)
        if issue.status == states.APPROVED:
            return issue
        if issue.status != states.DRAFT:
            raise IssueError(f"{issue.label} is {issue.status}; only a draft can be approved")
        _review(session, issue, seen)
        return _move(
            session,
            issue,
            {"status": states.APPROVED, "approved_at": clock.now(), "approved_by": (by or "")[:320]},
        )


def schedule_issue(number: int, when: datetime, *, by: str = "", seen: str | None = None) -> Issue:
    """Send at a chosen time: a draft with articles or an approved issue becomes
    ``scheduled`` for ``when``; the scheduler's tick sends it once that time has come.

    Scheduling is an approval (what is scheduled is what is sent), so a draft
    gets ``approved_at``/``approved_by`` too, and the same review as
    ``approve_issue``. Scheduling a scheduled issue again moves its time. ``when`` must be aware and in the future by ``clock.now()``.
    """
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise IssueError("the send time needs a time zone")
    when = when.astimezone(UTC)
    now = clock.now()
    if when <= now:
        raise IssueError(
            f"{when:%Y-%m-%d %H:%M} UTC is not in the future (it is now {now:%Y-%m-%d %H:%M} UTC)"
        )
    with session_scope() as session:
        issue = require_issue(session, number)
        if issue.status not in states.SCHEDULE.sources:
            raise IssueError(
                f"{issue.label} is {issue.status}; only a draft, approved or scheduled issue can be scheduled"
            )
        if issue.status == states.DRAFT:
            _review(session, issue, seen)
        values = {"status": states.SCHEDULED, "scheduled_for": when}
        if issue.approved_at is None:
            values |= {"approved_at": now, "approved_by": (by or "")[:320]}
        return _move(session, issue, values)


def unschedule_issue(number: int) -> Issue:
    """Take a scheduled issue off its time: it stays approved, to send now or schedule again."""
    with session_scope() as session:
        issue = require_issue(session, number)
        if issue.status == states.APPROVED:
            return issue
        if issue.status != states.SCHEDULED:
            raise IssueError(f"{issue.label} is {issue.status}; only a scheduled issue can be unscheduled")
        return _move(session, issue, {"status": states.APPROVED, "scheduled_for": None})


def update_issue(number: int, **fields) -> Issue:
    """Edit theme, title, subject, preheader or intro (Markdown) of an open issue.

    A new theme without a new title re-derives the title ("Issue 045: <theme>").
    Editing an approved or scheduled issue returns it to draft.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise IssueError(f"cannot edit {', '.join(sorted(unknown))}")
    with session_scope() as session:
        issue = require_issue(session, number)
        if issue.status not in states.EDITABLE:
            raise IssueError(f"{issue.label} is {issue.status} and can no longer be edited")
        changes = {}
        for name in ("theme", "title", "subject", "preheader"):
            if name in fields and fields[name] is not None:
                limit = 200 if name == "theme" else 300
                try:
                    changes[name] = clean_text(fields[name], max_length=limit, field=name)
                except ValueError as exc:
                    raise IssueError(str(exc)) from None
        if "intro" in fields and fields["intro"] is not None:
            intro = str(fields["intro"]).replace("\r\n", "\n")
            if len(intro) > INTRO_MAX:
                raise IssueError(f"intro is longer than {INTRO_MAX} characters")
            changes["intro"] = neutralise(intro)
        if "theme" in changes and not changes["theme"]:
            raise IssueError("theme must not be empty")
        if "theme" in changes and "title" not in changes:
            changes["title"] = f"{issue.label}: {changes['theme']}"[:300]
            if issue.subject == issue.title and "subject" not in changes:
                changes["subject"] = changes["title"]
        if "title" in changes and not changes["title"]:
            raise IssueError("title must not be empty")
        if "subject" in changes and not changes["subject"]:
            changes["subject"] = changes.get("title", issue.title)
        real = {k: v for k, v in changes.items() if getattr(issue, k) != v}
        if real:
            _edit(session, issue, real)
        return issue


def set_issue_articles(number: int, items: list[tuple[int, str]]) -> Issue:
    """Replace the issue's articles: ``[(article_id, section_slug), …]`` in reading order."""
    with session_scope() as session:
        issue = require_issue(session, number)
        ids = [int(a) for a, _ in items]
        if len(set(ids)) != len(ids):
            raise IssueError("an article can appear only once in an issue")
        known_sections = {t.slug for t in session.exec(select(Tag)).all()}
        for _, section in items:
            if section not in known_sections:
                raise IssueError(f"unknown section {section!r}")
        found = set(session.exec(select(Article.id).where(Article.id.in_(ids))).all()) if ids else set()
        missing = [i for i in ids if i not in found]
        if missing:
            raise IssueError(f"unknown article id(s): {', '.join(map(str, missing))}")
        if ids:
            taken = session.exec(
                select(IssueArticle.article_id, Issue.number)
                .join(Issue, Issue.id == IssueArticle.issue_id)
                .where(
                    IssueArticle.article_id.in_(ids), Issue.id != issue.id, Issue.status != states.CANCELLED
                )
            ).all()
            if taken:
                article_id, other = taken[0]
                raise IssueError(f"article {article_id} is already in Issue {other:03d}")
        _edit(session, issue, {})
        for link in session.exec(select(IssueArticle).where(IssueArticle.issue_id == issue.id)).all():
            session.delete(link)
        session.flush()
        for position, (article_id, section) in enumerate(items):
            session.add(
                IssueArticle(
                    issue_id=issue.id, article_id=int(article_id), section=section, position=position
                )
            )
        return issue


def cancel_issue(number: int) -> Issue:
    """Cancel an issue that has not started sending; its articles return to the pool."""
    with session_scope() as session:
        issue = require_issue(session, number)
        if issue.status == states.CANCELLED:
            return issue
        if issue.status not in states.CANCEL.sources:
            raise IssueError(
                f"{issue.label} is {issue.status}; stop a sending issue from the delivery controls"
            )
        return _move(
            session, issue, {"status": states.CANCELLED, "scheduled_for": None, "cancelled_at": clock.now()}
        )
