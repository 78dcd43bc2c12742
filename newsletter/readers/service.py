"""The reader's lifecycle: subscribe, confirm, change preferences, leave, erase.

These functions are the one place each action happens; the web form, the
JSON API, the CSV import and the editor all call them. Rules kept here:

* addresses are normalised with email-validator and lower-cased, so one
  person is one row and the suppression hash always matches;
* a suppressed address (erased, bounced, complained) is never added again,
  and callers facing the public answer the same way anyway (no enumeration);
* at most ``confirm_max_per_day`` confirmation mails per address per day,
  counted in the database so the cap holds across restarts and processes;
* a reader's time zone (local-time delivery) is an IANA name we know or
  nothing: an unknown one is not stored, the reader gets the issue at the
  newsletter's own time, and the fallback is counted (a ``timezone_fallback``
  event, see ``count_zone_fallbacks``);
* every mail a change asks for (confirmation, welcome) is queued in the same
  transaction as the change (``delivery.transactional.enqueue``) and sent by
  the sender: a request never waits on the mail server, and a mail server
  that is down delays the mail without losing it;
* an unsubscribed reader is only brought back by the reader (a confirmation
  link issued after they left, or their own preferences link), never by an
  import or by someone else filling the form;
* nobody changes a reader's record without controlling the address: what
  someone asks for an address that already has a record (pending or
  unsubscribed) is kept aside (``SubscribeRequest``) and applied only when
  the confirmation link mailed for that request is used; and no text a
  stranger typed goes into a mail to an unconfirmed address.

Each mail a reader gets has one function here that queues it
(``queue_confirmation``, ``queue_welcome``, ``send_preferences_link``): the
one place to change that mail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from newsletter import clock, zones
from newsletter.addresses import InvalidAddress, InvalidInput, clean_name, normalise_email
from newsletter.content import sections
from newsletter.db import contains_any, session_scope
from newsletter.delivery import webhooks
from newsletter.delivery.fanout import wait_for_fan_outs
from newsletter.delivery.transactional import enqueue
from newsletter.models import (
    Delivery,
    Event,
    Issue,
    OutboxMessage,
    Subscriber,
    SubscribeRequest,
    Tag,
    TransactionalMail,
)
from newsletter.readers import links
from newsletter.suppression import email_hash, suppress, suppression_reason

log = logging.getLogger("newsletter.readers")

CONSENT_TEXT = (
    "Send me GET THE SIGNAL, a weekly email about AI agents, at this address. "
    "I can unsubscribe at any time with the link at the bottom of every email."
)
SOURCES = ("form", "api", "embed", "import", "editor")
LEFT = ("unsubscribed", "bounced", "complained")  # statuses only the reader can undo


def split_topics(raw) -> list[str]:
    """Topics as a list of slugs, from a list or a string separated by , ; or |."""
    if raw is None:
        return []
    if isinstance(raw, str):
        for sep in ";|":
            raw = raw.replace(sep, ",")
        raw = raw.split(",")
    if not isinstance(raw, list | tuple | set | frozenset):
        raise InvalidInput("Topics must be a list of topic names.", "topics")
    out = []
    for item in raw:
        if not isinstance(item, str):
            raise InvalidInput("Topics must be a list of topic names.", "topics")
        if item.strip():
            out.append(item.strip().lower())
    return out


def topic_tags(session: Session, settings) -> list[Tag]:
    """The topics readers choose among: the newsletter's sections, in order."""
    return sections.current(session, settings).tags


def clean_topics(raw, available: Sequence[str]) -> str:
    """The stored form: sorted slugs joined by commas; "" (everything) when
    none or all are chosen, so a reader who wants it all also gets new sections."""
    chosen = set(split_topics(raw))
    unknown = sorted(chosen - set(available))
    if unknown:
        raise InvalidInput(f"Unknown topic: {', '.join(unknown)[:200]}", "topics")
    if not chosen or chosen == set(available):
        return ""
    return ",".join(sorted(chosen))


# --- subscribing -----------------------------------------------------------------


@dataclass
class SubscribeOutcome:
    """What happened. ``result``: created | resent | capped | already_active |
    updated | suppressed | kept_unsubscribed. Public callers show the same
    page for all of them."""

    result: str
    email: str
    subscriber_id: int | None = None
    mail_queued: bool = False


@dataclass
class Candidate:
    """One validated reader to add (from the form, the API or a CSV line).
    ``name``/``topics`` None mean "not given": an update keeps the old value."""

    email: str
    name: str | None = None
    topics: str | None = None
    timezone: str | None = None  # a canonical IANA name (``zones.clean_zone``); None = not given
    line_no: int = 0
    extra: dict = field(default_factory=dict)


def _record_consent(subscriber: Subscriber, settings, source: str, consent_text: str, ip: str | None) -> None:
    subscriber.consent_source = source
    subscriber.consent_at = clock.now()
    subscriber.consent_text = consent_text
    subscriber.consent_ip = (ip or None) if settings.store_ip else None


def _new_reader(
    settings, c: Candidate, *, source: str, consent_text: str, ip: str | None, double_opt_in: bool
) -> dict:
    """The row of a reader we have never seen (every column, so the CSV
    import can insert many at once without building ORM objects)."""
    now = clock.now()
    return dict(
        email=c.email,
        email_hash=email_hash(c.email),
        name=c.name or "",
        topics=c.topics or "",
        timezone=c.timezone or "",
        status="pending" if double_opt_in else "active",
        created_at=now,
        updated_at=now,
        confirmed_at=None,
        unsubscribed_at=None,
        consent_source=source,
        consent_at=now,
        consent_text=consent_text,
        consent_ip=(ip or None) if settings.store_ip else None,
        confirm_sent_at=None,
        confirm_sent_count=0,
    )


def _apply(
    session: Session,
    settings,
    existing: Subscriber | None,
    c: Candidate,
    *,
    source: str,
    consent_text: str,
    ip: str | None,
    double_opt_in: bool,
) -> tuple[str, Subscriber | None, bool]:
    """The rules for adding one reader: (result, subscriber, needs a confirmation mail)."""
    now = clock.now()
    if existing is None:
        sub = Subscriber(
            **_new_reader(
                settings, c, source=source, consent_text=consent_text, ip=ip, double_opt_in=double_opt_in
            )
        )
        session.add(sub)
        session.flush()
        session.add(Event(kind="subscribe", subscriber_id=sub.id, detail=source))
        return "created", sub, double_opt_in

    def refresh() -> None:
        if c.name is not None and (c.name or source != "import"):
            existing.name = c.name
        if c.topics is not None and (c.topics or source != "import"):
            existing.topics = c.topics
        if c.timezone:
            existing.timezone = c.timezone
        existing.updated_at = now

    if existing.status == "active":
        if double_opt_in:
            return "already_active", existing, False  # nobody else may change a reader's choices
        refresh()
        return "updated", existing, False
    if existing.status == "pending":
        if double_opt_in:  # the request waits for its confirmation link (``_keep_request``)
            return "resent", existing, True
        refresh()
        _record_consent(existing, settings, source, consent_text, ip)
        existing.status = "active"
        session.add(Event(kind="subscribe", subscriber_id=existing.id, detail=source))
        return "updated", existing, False
    # unsubscribed / bounced / complained: only the reader can come back, so
    # an operator's import or addition neither reactivates nor re-mails them
    if not double_opt_in or source in ("import", "editor"):
        return "kept_unsubscribed", existing, False
    return "resent", existing, True  # the request waits for its confirmation link


def _keep_request(
    session: Session, settings, sub: Subscriber, c: Candidate, *, source: str, consent_text: str, ip
) -> int:
    """Keep what was asked for an existing reader until the confirmation
    link mailed for this request is used (``confirm``); returns its id."""
    request = SubscribeRequest(
        subscriber_id=sub.id,
        name=c.name or "",
        topics=c.topics if c.topics is not None else sub.topics,
        timezone=c.timezone or "",
        consent_source=source,
        consent_text=consent_text,
        consent_ip=(ip or None) if settings.store_ip else None,
    )
    session.add(request)
    session.flush()
    return request.id


def _reserve_confirmation(session: Session, settings, subscriber_id: int) -> bool:
    """Count one confirmation mail against the daily cap, atomically (two
    conditional UPDATEs: start a new 24-hour window, or add to the current one)."""
    now = clock.now()
    window = now - timedelta(days=1)
    fresh = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .where(or_(Subscriber.confirm_sent_at.is_(None), Subscriber.confirm_sent_at <= window))
        .values(confirm_sent_at=now, confirm_sent_count=1)
    )
    if fresh.rowcount == 1:
        return True
    more = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .where(Subscriber.confirm_sent_at > window)
        .where(Subscriber.confirm_sent_count < settings.confirm_max_per_day)
        .values(confirm_sent_count=Subscriber.confirm_sent_count + 1)
    )
    return more.rowcount == 1


def queue_confirmation(
    session: Session, settings, subscriber_id: int, email: str, request_id: int | None = None
) -> None:
    """The confirmation mail, queued in the caller's transaction (the one place
    it is made). It goes to an address nobody has proven yet, so it carries no
    text anyone typed: no name, in the body or the To header."""
    enqueue(
        session,
        kind="confirmation",
        to=email,
        subject="Confirm your subscription to GET THE SIGNAL",
        template="confirm",
        context={
            "email": email,
            "confirm_url": links.confirm_url(settings, subscriber_id, request_id),
            "max_age_days": settings.token_max_age_days,
        },
        subscriber_id=subscriber_id,
    )


def queue_already_subscribed(session: Session, settings, subscriber_id: int, email: str) -> None:
    """Someone asked to subscribe an address that is already active: tell that
    address (and only it), with its preferences link, so the "check your inbox"
    promise is kept without the public page saying anything different. Like the
    confirmation, it carries no text anyone typed."""
    enqueue(
        session,
        kind="already_subscribed",
        to=email,
        subject="You are already subscribed to GET THE SIGNAL",
        template="already_subscribed",
        context={"preferences_url": links.preferences_url(settings, subscriber_id)},
        subscriber_id=subscriber_id,
    )


def send_new_link(settings, email: str) -> bool:
    """ "Send me a new link" by address, from any link that did not work: an active
    reader gets their preferences link, anyone else a fresh confirmation link.
    Silent (and capped) the same way whatever the address is."""
    with session_scope() as session:
        try:
            sub = session.exec(
                select(Subscriber).where(Subscriber.email == normalise_email(email, settings))
            ).first()
        except InvalidAddress:
            return False
        active = sub is not None and sub.status == "active"
        subscriber_id = sub.id if sub is not None else None
    if active:
        return send_preferences_link(settings, subscriber_id)
    return resend_confirmation(settings, email=email)


def subscribe(
    settings,
    *,
    email,
    name="",
    topics=(),
    timezone=None,
    source="form",
    consent_text=CONSENT_TEXT,
    ip=None,
    double_opt_in=True,
) -> SubscribeOutcome:
    """Add a reader (or send a fresh confirmation link). Raises ``InvalidInput``
    for bad input; every other case is an outcome, never an exception.
    ``timezone`` is what the browser or client reported: a zone we do not
    know is dropped (the reader gets the newsletter's time) and counted."""
    if source not in SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    # PostgreSQL's text cannot hold a NUL (a 500 there, found by the API fuzz run):
    # the replacement character keeps the rest of what the reader saw.
    consent_text = consent_text.replace("\x00", "\ufffd")
    address = normalise_email(email, settings)
    zone, fell_back = zones.clean_zone(timezone)
    candidate = Candidate(email=address, name=clean_name(name), timezone=zone or None)
    for attempt in (1, 2):
        try:
            with session_scope() as session:
                candidate.topics = clean_topics(topics, [t.slug for t in topic_tags(session, settings)])
                if suppression_reason(session, address):
                    return SubscribeOutcome("suppressed", address)
                existing = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
                result, sub, wants_mail = _apply(
                    session,
                    settings,
                    existing,
                    candidate,
                    source=source,
                    consent_text=consent_text,
                    ip=ip,
                    double_opt_in=double_opt_in,
                )
                mail = wants_mail and _reserve_confirmation(session, settings, sub.id)
                if wants_mail and not mail:
                    result = "capped"
                request_id = None
                if mail and existing is not None:
                    request_id = _keep_request(
                        session, settings, sub, candidate, source=source, consent_text=consent_text, ip=ip
                    )
                if mail:
                    queue_confirmation(session, settings, sub.id, address, request_id)
                if result == "already_active" and _reserve_confirmation(session, settings, sub.id):
                    queue_already_subscribed(session, settings, sub.id, address)  # the page says the same
                    mail = True
                if fell_back:
                    count_zone_fallbacks(session, 1, subscriber_id=sub.id, detail=source)
                outcome = SubscribeOutcome(result, address, sub.id, mail_queued=mail)
            break
        except IntegrityError:
            if attempt == 2:  # a concurrent request inserted the same address twice in a row
                raise
    return outcome


def resend_confirmation(settings, *, email: str | None = None, subscriber_id: int | None = None) -> bool:
    """Queue a fresh confirmation link for a reader who has not confirmed (or
    who left), within the daily cap. Silent about everything else."""
    with session_scope() as session:
        query = select(Subscriber)
        if subscriber_id is not None:
            query = query.where(Subscriber.id == subscriber_id)
        else:
            try:
                query = query.where(Subscriber.email == normalise_email(email, settings))
            except InvalidAddress:
                return False
        sub = session.exec(query).first()
        if sub is None or sub.status == "active" or suppression_reason(session, sub.email):
            return False
        if not _reserve_confirmation(session, settings, sub.id):
            return False
        queue_confirmation(session, settings, sub.id, sub.email)
    return True


# --- confirming, preferences, leaving ----------------------------------------------


@dataclass
class ConfirmOutcome:
    """result: confirmed | already | stale | missing | suppressed."""

    result: str
    subscriber_id: int | None = None
    email: str = ""
    name: str = ""
    topics: str = ""


def confirm(settings, subscriber_id: int, issued_at: int, request_id: int | None = None) -> ConfirmOutcome:
    """Activate a reader from their confirmation link (a person's POST: the
    page a GET shows changes nothing, so link scanners are harmless).
    Idempotent; the welcome mail is queued once, in the transaction of the one
    request that made the change. A link mailed for a ``SubscribeRequest``
    applies what that request asked (name, topics, consent) now that the
    address is proven; every other request kept for the reader is dropped."""
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return ConfirmOutcome("missing")
        out = ConfirmOutcome("already", sub.id, sub.email, sub.name, sub.topics)
        if suppression_reason(session, sub.email):
            out.result = "suppressed"
            return out
        if sub.status == "active":
            return out
        if sub.status in LEFT and sub.unsubscribed_at and issued_at <= int(sub.unsubscribed_at.timestamp()):
            out.result = "stale"  # a link from before they left must not bring them back
            return out
        now = clock.now()
        changed = session.execute(
            update(Subscriber)
            .where(Subscriber.id == sub.id, Subscriber.status == sub.status)
            .values(status="active", confirmed_at=now, unsubscribed_at=None, updated_at=now)
        ).rowcount
        if changed != 1:
            return out
        _apply_request(session, sub, request_id)
        session.add(Event(kind="confirm", subscriber_id=sub.id))
        session.refresh(sub)
        out = ConfirmOutcome("confirmed", sub.id, sub.email, sub.name, sub.topics)
        queue_welcome(session, settings, out)
        webhooks.emit(session, "subscriber.confirmed", _webhook_data(sub))
    return out


@dataclass
class Requested:
    """What confirming a link will set, shown on the page before the button."""

    name: str
    topics: list[str]  # names; empty means every section


def requested(settings, subscriber_id: int, request_id: int | None) -> Requested | None:
    """The name and topics a confirmation link would apply (the request it
    was mailed for, else the pending record), so the person confirming sees
    what someone asked for before agreeing to it."""
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return None
        request = session.get(SubscribeRequest, request_id) if request_id is not None else None
        if request is not None and request.subscriber_id == sub.id:
            name, topics = request.name or sub.name, request.topics
        else:
            name, topics = sub.name, sub.topics
        return Requested(name, _topic_names(session, settings, topics))


def _apply_request(session: Session, sub: Subscriber, request_id: int | None) -> None:
    """Apply the confirmed request, if the link named one of this reader's, and forget the rest."""
    request = session.get(SubscribeRequest, request_id) if request_id is not None else None
    if request is not None and request.subscriber_id == sub.id:
        values = {
            "topics": request.topics,
            **({"timezone": request.timezone} if request.timezone else {}),
            "consent_source": request.consent_source,
            "consent_at": request.created_at,
            "consent_text": request.consent_text,
            "consent_ip": request.consent_ip,
        }
        if request.name:
            values["name"] = request.name
        session.execute(update(Subscriber).where(Subscriber.id == sub.id).values(**values))
    session.execute(delete(SubscribeRequest).where(SubscribeRequest.subscriber_id == sub.id))


def queue_welcome(session: Session, settings, who: ConfirmOutcome) -> None:
    """The welcome mail, queued in the caller's transaction (the one place it is made)."""
    unsubscribe = links.unsubscribe_url(settings, who.subscriber_id)
    enqueue(
        session,
        kind="welcome",
        to=who.email,
        to_name=who.name,
        subject="Welcome to GET THE SIGNAL",
        template="welcome",
        context={
            "name": who.name,
            "topics": _topic_names(session, settings, who.topics),
            "preferences_url": links.preferences_url(settings, who.subscriber_id),
            "unsubscribe_url": unsubscribe,
        },
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        subscriber_id=who.subscriber_id,
    )


def send_preferences_link(settings, subscriber_id: int) -> bool:
    """Queue the link to a reader's preferences page (asked for from an
    unsubscribe page, which never shows it: an unsubscribe link travels in
    headers, is forwarded and fetched by scanners). Counted against the same
    daily cap as confirmation mails; silent about readers we cannot mail."""
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None or suppression_reason(session, sub.email):
            return False
        if not _reserve_confirmation(session, settings, sub.id):
            return False
        enqueue(
            session,
            kind="preferences_link",
            to=sub.email,
            subject="Your GET THE SIGNAL preferences link",
            template="preferences_link",
            context={"preferences_url": links.preferences_url(settings, subscriber_id)},
            subscriber_id=subscriber_id,
        )
    return True


def _topic_names(session: Session, settings, topics: str) -> list[str]:
    chosen = [t for t in topics.split(",") if t]
    if not chosen:
        return []
    names = {t.slug: t.name for t in topic_tags(session, settings)}
    return [names.get(slug, slug) for slug in chosen]


@dataclass
class ZoneSummary:
    """Readers' zones (local-time delivery): how many active readers have
    none (they get the newsletter's time), and how many gave an unknown one.
    The dashboard and the API's stats show it."""

    without: int
    unknown_given: int


def zone_summary(session: Session) -> ZoneSummary:
    without = session.exec(
        select(func.count()).where(Subscriber.timezone == "", Subscriber.status == "active")
    ).one()
    return ZoneSummary(without=without, unknown_given=zone_fallbacks(session))


def zone_fallbacks(session: Session) -> int:
    """How many readers gave a time zone we did not know (``count_zone_fallbacks``)."""
    details = session.exec(select(Event.detail).where(Event.kind == "timezone_fallback")).all()
    return sum(int(d.rsplit(": ", 1)[-1]) if d.rsplit(": ", 1)[-1].isdigit() else 1 for d in details)


def count_zone_fallbacks(
    session: Session, count: int, *, subscriber_id: int | None = None, detail=""
) -> None:
    """Record that ``count`` readers gave a time zone we do not know and fell
    back to NEWSLETTER_TIMEZONE (what they sent is not kept: it is untrusted)."""
    if count:
        log.info("%s unknown time zone(s) (%s): NEWSLETTER_TIMEZONE used", count, detail)
        session.add(
            Event(kind="timezone_fallback", subscriber_id=subscriber_id, detail=f"{detail}: {count}"[:1000])
        )


def update_preferences(settings, subscriber_id: int, *, name, topics, timezone=None) -> None:
    """The reader's own choices. ``timezone`` None leaves it as it is; "" means
    "the newsletter's time"; an unknown name is refused (the reader picks
    from a list, so this is not a browser guess to fall back from)."""
    zone, fell_back = zones.clean_zone(timezone)
    if fell_back:
        raise InvalidInput("Unknown time zone.", "timezone")
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            raise LookupError("no such reader")
        sub.name = clean_name(name)
        sub.topics = clean_topics(topics, [t.slug for t in topic_tags(session, settings)])
        if timezone is not None:
            sub.timezone = zone
        sub.updated_at = clock.now()
        session.add(Event(kind="preferences", subscriber_id=sub.id))


def unsubscribe(session: Session, subscriber: Subscriber, source: str) -> bool:
    """Stop mailing the reader. Idempotent: True only when this call changed it."""
    if subscriber.status not in ("active", "pending"):
        return False
    now = clock.now()
    changed = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id, Subscriber.status == subscriber.status)
        .values(status="unsubscribed", unsubscribed_at=now, updated_at=now)
    ).rowcount
    if changed != 1:
        return False
    session.add(Event(kind="unsubscribe", subscriber_id=subscriber.id, detail=source[:100]))
    session.refresh(subscriber)
    webhooks.emit(session, "subscriber.unsubscribed", {**_webhook_data(subscriber), "source": source[:100]})
    return True


def _webhook_data(sub: Subscriber) -> dict:
    """What an integration hears about a reader (admins chose to send it there)."""
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "topics": sub.topic_list,
        "status": sub.status,
    }


def resubscribe(settings, subscriber_id: int) -> str:
    """The reader's own way back from their preferences link (it proves they
    hold the address). Returns active | suppressed | missing | unchanged."""
    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            return "missing"
        if suppression_reason(session, sub.email):
            return "suppressed"
        if sub.status not in LEFT:
            return "unchanged"
        sub.status = "active"
        sub.unsubscribed_at = None
        sub.updated_at = clock.now()
        _record_consent(sub, settings, "form", CONSENT_TEXT, None)
        session.add(Event(kind="subscribe", subscriber_id=sub.id, detail="resubscribe"))
        return "active"


def erase(session: Session, subscriber: Subscriber) -> None:
    """Delete the reader and every row about them; keep only the hash of the
    address on the suppression list so no import or form can bring it back."""
    address, sid = subscriber.email, subscriber.id
    suppress(session, address, "erased")
    wait_for_fan_outs(
        session
    )  # delivery has no FK: let a running fan-out commit first, then delete its row too
    session.execute(delete(Delivery).where(Delivery.subscriber_id == sid))
    session.execute(delete(Event).where(Event.subscriber_id == sid))
    session.execute(delete(SubscribeRequest).where(SubscribeRequest.subscriber_id == sid))
    session.execute(delete(OutboxMessage).where(OutboxMessage.recipient == address))
    session.execute(
        delete(TransactionalMail).where(
            or_(TransactionalMail.subscriber_id == sid, TransactionalMail.to_email == address)
        )
    )
    session.delete(subscriber)
    session.add(Event(kind="erase"))  # counted, not linked to anyone
    session.flush()


def _iso(value):
    return value.isoformat() if value else None


def export_data(session: Session, subscriber: Subscriber) -> dict:
    """Everything we hold about one reader (the preferences page's download)."""
    events = session.exec(select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id)).all()
    deliveries = session.exec(
        select(Issue.number, Delivery.status, Delivery.sent_at)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Issue.number)
    ).all()
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "topics": subscriber.topic_list,
        "timezone": subscriber.timezone,  # "": the newsletter's own
        "created_at": _iso(subscriber.created_at),
        "updated_at": _iso(subscriber.updated_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "consent": {
            "source": subscriber.consent_source,
            "at": _iso(subscriber.consent_at),
            "text": subscriber.consent_text,
            "ip": subscriber.consent_ip,
        },
        "confirmation_mails_today": subscriber.confirm_sent_count,
        "events": [{"kind": e.kind, "at": _iso(e.created_at), "detail": e.detail} for e in events],
        "issues_sent": [{"issue": n, "status": s, "sent_at": _iso(at)} for n, s, at in deliveries],
        "exported_at": _iso(clock.now()),
    }


# --- the operator's view: `newsletter subscribers add|remove|list` ------------------------

OPERATOR_CONSENT = "Added by the list owner, who collected the reader's consent (newsletter subscribers add)."


def find_reader(session: Session, settings, email: str) -> Subscriber | None:
    """The reader with this address (normalised as on subscribe); None if unknown."""
    return session.exec(
        select(Subscriber).where(Subscriber.email == normalise_email(email, settings))
    ).first()


def iter_readers(session: Session, *, status: str | None = None, search: str = "", limit: int | None = None):
    """Readers oldest first, streamed from the database (a million never sit in memory)."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    if search.strip():
        query = query.where(contains_any(search, Subscriber.email, Subscriber.name))
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query.execution_options(yield_per=1000))
