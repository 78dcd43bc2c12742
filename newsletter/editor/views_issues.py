"""Issues: list, edit a draft, preview, test send, approve, schedule, send,
pause, resume, cancel, and a small JSON endpoint for live progress.

Every state change is one call into ``issues.service``, ``delivery.send`` or
``delivery.deliver``; these views only read forms and report outcomes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlmodel import select
from werkzeug.datastructures import MultiDict

from newsletter.addresses import InvalidAddress, normalise_email
from newsletter.db import session_scope
from newsletter.delivery.deliver import deliver, resume
from newsletter.delivery.fanout import audience_count
from newsletter.delivery.send import DeliveryError, cancel_sending, issue_counts, pause_issue, waves_to_come
from newsletter.delivery.testsend import MAX_TEST_ADDRESSES, send_test
from newsletter.editor import issue_edit
from newsletter.editor.dashboard import slot_window
from newsletter.editor.forms import ActionForm, ConfirmSendForm, IssueForm, ScheduleForm, TestSendForm
from newsletter.editor.views import bp
from newsletter.extensions import settings
from newsletter.issues import states
from newsletter.issues.preview import build_preview, preview_issue
from newsletter.issues.service import (
    EDITABLE_FIELDS,
    approve_issue,
    assemble_issue,
    cancel_issue,
    changed_since_approval,
    review_digest,
    same_title,
    schedule_issue,
    sections,
    set_issue_articles,
    unschedule_issue,
    update_issue,
)
from newsletter.models import Issue
from newsletter.rendering.view import issue_content
from newsletter.web import int_arg, mail_html_response, text_arg

log = logging.getLogger("newsletter.editor")
PAGE = 30
REFUSALS = (ValueError, LookupError, DeliveryError)  # how services refuse an action: shown, not logged


# --- helpers ---------------------------------------------------------------------


def _issue_or_404(db, number: int) -> Issue:
    issue = db.exec(select(Issue).where(Issue.number == number)).first()
    if issue is None:
        abort(404)
    return issue


def _sections(db) -> list:
    return list(sections(db, settings()))


def _topics_arg(section_slugs: list[str]) -> str | None:
    """``?topics=a,b`` limited to known sections, sorted like Subscriber.topics."""
    raw = ",".join(request.values.getlist("topics"))
    chosen = sorted({t for t in re.split(r"[,\s]+", raw) if t in section_slugs})
    return ",".join(chosen) or None


def _act(number: int, what: str, call, done: str) -> None:
    """Run one state change, flashing its outcome in words (refusals are shown, not
    raised): ``what`` names the action for a refusal, ``done`` says what is now true."""
    try:
        call()
    except REFUSALS as exc:
        flash(f"Could not {what}: {exc}", "error")
        return
    except Exception as exc:  # noqa: BLE001 - the editor sees a message; the log keeps the trace
        log.exception("editor action %s on issue %s failed", what, number)
        exc_name = type(exc).__name__
        flash(f"Could not {what} ({exc_name}): {exc}", "error")
        return
    flash(f"Issue {number:03d} {done}", "success")


def _back(number: int):
    return redirect(url_for("editor.issue", number=number))


# --- list, edit ----------------------------------------------------------------------


@bp.get("/issues")
def issues():
    before = int_arg("before")
    with session_scope() as db:
        stmt = select(Issue).order_by(Issue.number.desc()).limit(PAGE + 1)
        if before is not None:
            stmt = stmt.where(Issue.number < before)
        rows = list(db.exec(stmt))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render_template(
        "editor/issues.html",
        issues=rows,
        next_before=rows[-1].number if more and rows else None,
        action=ActionForm(),
    )


@bp.post("/issues/assemble")
def issue_assemble():
    result = assemble_issue(settings())
    if result.issue is None:
        flash(result.message or "Nothing to assemble.", "warning")
        return redirect(url_for("editor.issues"))
    flash(result.message or f"Issue {result.issue.number:03d} assembled.", "success")
    return redirect(url_for("editor.issue", number=result.issue.number))


def _issue_page(number: int, form: IssueForm | None = None, status: int = 200):
    with session_scope() as db:
        issue = _issue_or_404(db, number)
        sections = _sections(db)
        rows = issue_edit.current_rows(db, issue)
        candidates = issue_edit.candidates(db, issue, text_arg("add_q", 200))
        audience = audience_count(db)
        seen = review_digest(db, issue)  # the approval form says what the editor saw
        shown = issue_content(db, issue)  # an approved issue as it will be sent (its snapshot)
        changed = changed_since_approval(db, issue)
        twin = same_title(db, issue)
        window = slot_window(settings(), issue.slot_at, db) if issue.status in states.EDITABLE else None
    waves = waves_to_come(issue.id) if issue.status in states.IN_FLIGHT else []
    form = form or IssueForm(obj=issue)
    section_names = {t.slug: t.name for t in sections}
    appearing = list(dict.fromkeys(ia.section for ia, _ in rows))  # the issue's own section order
    by_slug = {t.slug: t for t in sections}
    ranked = [by_slug[s] for s in appearing if s in by_slug] + [
        t for t in sections if t.slug not in appearing
    ]
    return (
        render_template(
            "editor/issue.html",
            issue=issue,
            form=form,
            rows=rows,
            sections=sections,
            section_names=section_names,
            ranked_sections=ranked,
            candidates=candidates,
            add_q=request.args.get("add_q", ""),
            audience=audience,
            action=ActionForm(),
            test_form=TestSendForm(),
            schedule_form=ScheduleForm(
                data={"when": issue.scheduled_for.astimezone(settings().tz).replace(tzinfo=None)}
                if issue.scheduled_for
                else None
            ),
            editable=issue.status in states.EDITABLE,
            seen=seen,
            shown=shown,
            changed=changed,
            twin=twin,
            # a failed save shows the articles as the editor left them, not as stored
            posted=request.form if request.method == "POST" else MultiDict(),
            window=window,
            waves=waves,
            local_time=settings().local_time_delivery,
        ),
        status,
    )


@bp.get("/issues/<int:number>")
def issue(number: int):
    return _issue_page(number)


@bp.post("/issues/<int:number>")
def issue_save(number: int):
    form = IssueForm()
    if not form.validate_on_submit():
        flash("Some fields need attention.", "error")
        return _issue_page(number, form, 400)
    with session_scope() as db:
        issue = _issue_or_404(db, number)
        if issue.status not in states.EDITABLE:
            flash(f"{issue.label} is {issue.status} and can no longer be edited.", "error")
            return _back(number)
        try:
            plan = issue_edit.plan_from_form(db, issue, request.form, [t.slug for t in _sections(db)])
        except issue_edit.EditError as exc:
            flash(f"Articles not saved: {exc}.", "error")
            return _issue_page(number, form, 400)
    fields = {name: getattr(form, name).data.strip() for name in EDITABLE_FIELDS}
    try:
        update_issue(number, **fields)
        set_issue_articles(number, plan)
    except (ValueError, LookupError) as exc:  # IssueError: the message says why
        flash(f"Not saved: {exc}", "error")
        return _issue_page(number, form, 400)
    flash("Draft saved.", "success")
    anchor = (
        "#articles" if request.form.get("add") or any(k.startswith("remove_") for k in request.form) else ""
    )
    return redirect(url_for("editor.issue", number=number) + anchor)


# --- preview -----------------------------------------------------------------------


@bp.get("/issues/<int:number>/preview")
def issue_preview(number: int):
    with session_scope() as db:
        issue = _issue_or_404(db, number)
        sections = _sections(db)
    topics = _topics_arg([t.slug for t in sections])
    view = "text" if request.args.get("view") == "text" else "html"
    width = "mobile" if request.args.get("width") == "mobile" else "desktop"
    preview = build_preview(settings(), number, topics=topics, with_inbox_lines=True)
    return render_template(
        "editor/preview.html",
        issue=issue,
        sections=sections,
        topics=topics or "",
        chosen=set((topics or "").split(",")) - {""},
        view=view,
        width=width,
        subject=preview.message.subject,
        preheader=preview.preheader,
        inbox_lines=preview.inbox_lines,
        variant=preview.variant,
        text=preview.message.text,
        size_kb=len(preview.message.html.encode("utf-8")) / 1024,
        findings=preview.lint,
        test_form=TestSendForm(),
    )


@bp.get("/issues/<int:number>/preview.html")
def issue_preview_html(number: int):
    """The email HTML for the preview iframe, under its own CSP (inline styles
    allowed, no scripts, sandboxed)."""
    with session_scope() as db:
        _issue_or_404(db, number)
        slugs = [t.slug for t in _sections(db)]
    return mail_html_response(preview_issue(settings(), number, topics=_topics_arg(slugs)))


# --- test send ----------------------------------------------------------------------


def parse_addresses(raw: str) -> tuple[list[str], list[str]]:
    """Split a list of addresses; return (valid normalised, refused)."""
    good: list[str] = []
    bad: list[str] = []
    offline = replace(settings(), check_deliverability=False)
    for item in re.split(r"[,;\s]+", raw.strip()):
        if not item:
            continue
        try:
            address = normalise_email(item, offline)
        except InvalidAddress:
            bad.append(item[:80])
            continue
        if address not in good:
            good.append(address)
    return good, bad


@bp.post("/issues/<int:number>/test")
def issue_test(number: int):
    form = TestSendForm()
    back = request.form.get("back", "")
    target = back if back.startswith(f"/editor/issues/{number}") else url_for("editor.issue", number=number)
    if not form.validate_on_submit():
        flash("Enter at least one address for the test.", "error")
        return redirect(target)
    addresses, refused = parse_addresses(form.addresses.data)
    if refused:
        flash(f"Not an email address: {', '.join(refused)}. Nothing was sent.", "error")
        return redirect(target)
    if len(addresses) > MAX_TEST_ADDRESSES:
        flash(f"A test goes to at most {MAX_TEST_ADDRESSES} addresses.", "error")
        return redirect(target)
    with session_scope() as db:
        _issue_or_404(db, number)
        topics = _topics_arg([t.slug for t in _sections(db)])
    try:
        results = send_test(settings(), number, addresses, topics=topics)
    except (ValueError, LookupError, OSError) as exc:
        flash(f"The test was not sent: {exc}", "error")
        return redirect(target)
    failed = [
        f"{a} ({r.status}: {getattr(r, 'detail', '') or getattr(r, 'error', '')})"
        for a, r in zip(addresses, results, strict=False)
        if r.status != "sent"
    ]
    if failed:
        flash(f"Test not delivered to: {'; '.join(failed)}", "error")
    else:
        flash(f"Test sent to {', '.join(addresses)} (subject starts with [TEST]).", "success")
    return redirect(target)


# --- lifecycle ----------------------------------------------------------------------


def _seen() -> str | None:
    """The content fingerprint the page showed the editor (None when the form had none)."""
    return request.form.get("seen") or None


@bp.post("/issues/<int:number>/approve")
def issue_approve(number: int):
    _act(
        number,
        "approve",
        lambda: approve_issue(number, current_user.email, seen=_seen()),
        "is approved: it goes out at its slot, or schedule it or send it now.",
    )
    return _back(number)


# Local-time delivery: a send at a chosen time is one moment for everyone (only the
# weekly slot goes out at its time in each reader's own zone).
_AT_ONCE = ": every reader gets it then, in every time zone at once"


@bp.post("/issues/<int:number>/schedule")
def issue_schedule(number: int):
    """Send at a chosen time (in NEWSLETTER_TIMEZONE); the scheduler's tick sends it."""
    form = ScheduleForm()
    if not form.validate_on_submit():
        flash("Choose a date and time to send at.", "error")
        return _back(number)
    local: datetime = form.when.data.replace(tzinfo=settings().tz)
    when = f"{local:%a %d %b %Y %H:%M} {local.tzname()}"
    _act(
        number,
        f"schedule for {when}",
        lambda: schedule_issue(number, local, by=current_user.email, seen=_seen()),
        f"is scheduled for {when}{_AT_ONCE if settings().local_time_delivery else ''}.",
    )
    return _back(number)


@bp.post("/issues/<int:number>/unschedule")
def issue_unschedule(number: int):
    """Take the issue off its time; it stays approved."""
    _act(number, "unschedule", lambda: unschedule_issue(number), "is no longer scheduled; it stays approved.")
    return _back(number)


@bp.route("/issues/<int:number>/send", methods=["GET", "POST"])
def issue_send(number: int):
    """Send now, after a confirmation step that names the issue and audience.
    The send runs in the background (``deliver`` hands it to the senders)."""
    form = ConfirmSendForm()
    with session_scope() as db:
        issue = _issue_or_404(db, number)
        audience = audience_count(db)
    if request.method == "POST":
        if not form.validate_on_submit() or form.confirm_number.data != number:
            flash(f"Type {number} to confirm sending this issue.", "error")
        else:
            try:
                deliver(settings(), number, here=False, continue_started=False)
            except REFUSALS as exc:  # AlreadySending, NotSendable: shown to the editor
                flash(f"Not sent: {exc}", "error")
                return _back(number)
            everyone = (
                ": every reader gets it now, in every time zone" if settings().local_time_delivery else ""
            )
            flash(f"Issue {number:03d} is sending{everyone}.", "success")
            return _back(number)
    return render_template(
        "editor/send_confirm.html",
        issue=issue,
        audience=audience,
        form=form,
        local_time=settings().local_time_delivery,
        window=slot_window(settings(), issue.slot_at),
    )


@bp.post("/issues/<int:number>/pause")
def issue_pause(number: int):
    _act(number, "pause", lambda: pause_issue(number), "is paused: no more mail goes out until you resume.")
    return _back(number)


@bp.post("/issues/<int:number>/resume")
def issue_resume(number: int):
    _act(number, "resume", lambda: resume(settings(), number), "is sending again.")
    return _back(number)


@bp.post("/issues/<int:number>/cancel")
def issue_cancel(number: int):
    with session_scope() as db:
        status = _issue_or_404(db, number).status
    cancel = cancel_sending if status in states.IN_FLIGHT else cancel_issue
    _act(number, "cancel", lambda: cancel(number), "is cancelled.")
    return _back(number)


@bp.get("/issues/<int:number>/progress.json")
def issue_progress(number: int):
    """Polled by editor.js while an issue sends."""
    with session_scope() as db:
        issue = _issue_or_404(db, number)
        counts = dict(issue_counts(db, issue.id))
    total = counts.get("total") or 0
    done = sum(counts.get(k, 0) for k in ("sent", "failed", "skipped"))
    return jsonify(
        number=number,
        status=issue.status,
        counts=counts,
        done=done,
        total=total,
        percent=round(100 * done / total, 1) if total else (100.0 if issue.status == states.SENT else 0.0),
        finished=issue.status in states.FINISHED,
    )
