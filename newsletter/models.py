"""Every table, in one readable schema module.

Statuses are plain strings checked by the services (listed in the constants
below) rather than database enums, so adding one needs no enum migration.
Times are aware UTC datetimes (SQLModel's UTCDateTime stores them as UTC on
SQLite and PostgreSQL alike); ``utcnow()`` is the one clock the code reads,
so tests can control it.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from newsletter import clock


def utcnow() -> datetime:
    return clock.now()


# --- statuses -------------------------------------------------------------

SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
EDITOR_ROLES = ("admin", "editor")
MAIL_STATUSES = ("pending", "sending", "sent", "failed", "skipped")  # a transactional mail's
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "skipped")  # an issue's delivery row


# --- readers ---------------------------------------------------------------


class Subscriber(SQLModel, table=True):
    """A reader. ``topics`` is the sorted, comma-separated list of tag slugs
    they chose; empty means "everything". Kept as one column so fan-out can
    copy it into delivery rows with one INSERT … SELECT. AUTOINCREMENT on
    SQLite so an erased reader's id (and old links) never point at someone new."""

    __table_args__ = (
        # Local-time delivery: the distinct zones of active readers, one probe each
        # (``delivery.localtime``). Zone first, so the fan-out's "status = 'active'"
        # keeps using ix_subscriber_status (readers in id order: the delivery
        # rows' unique index is then written in order).
        Index("ix_subscriber_timezone_status", "timezone", "status"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    email_hash: str = Field(
        max_length=64, index=True
    )  # suppression.email_hash(email): joins the suppression list
    name: str = Field(default="", max_length=200)
    status: str = Field(default="pending", max_length=20, index=True)
    topics: str = Field(default="", max_length=1000)
    # IANA name (``zones.canonical``); "" = the newsletter's NEWSLETTER_TIMEZONE
    timezone: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    # consent record: when, how, what text, and (only if enabled) from where
    consent_source: str = Field(default="form", max_length=20)  # form | api | import | editor
    consent_at: datetime | None = None
    consent_text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    consent_ip: str | None = Field(default=None, max_length=64)
    # double opt-in bookkeeping (anti mail-bomb: a few confirmation mails a day)
    confirm_sent_at: datetime | None = None
    confirm_sent_count: int = 0

    @property
    def topic_list(self) -> list[str]:
        return [t for t in self.topics.split(",") if t]


class SubscribeRequest(SQLModel, table=True):
    """What someone asked for when subscribing an address that already has a
    record (pending or unsubscribed), kept aside until the confirmation link
    mailed for this request is used: a stranger cannot change a reader's
    name, topics or consent record without controlling the address."""

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    name: str = Field(default="", max_length=200)
    topics: str = Field(default="", max_length=1000)
    timezone: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))
    consent_source: str = Field(default="form", max_length=20)
    consent_text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    consent_ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Suppression(SQLModel, table=True):
    """Addresses we must never mail again, kept only as a SHA-256 hash so an
    erased reader's address is not stored in clear, yet a re-import is refused."""

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True, index=True)
    reason: str = Field(max_length=40)  # erased | hard_bounce | soft_bounce | complaint | manual
    detail: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


# --- content ---------------------------------------------------------------


class Tag(SQLModel, table=True):
    """A tag on articles; tags shown in the newsletter are its sections, and
    readers choose among them as topics."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=80, unique=True, index=True)
    name: str = Field(max_length=120)
    description: str = Field(default="", max_length=500)
    position: int = 100  # section order
    is_section: bool = True  # appears as a section and as a reader topic


class Article(SQLModel, table=True):
    """An article. ``external_id`` is unique within its ``source_key`` (the
    API token, feed URL or file import it came from): one source can never
    match, and so overwrite, another's articles (``content.service``)."""

    __table_args__ = (UniqueConstraint("source_key", "external_id", name="uq_article_source_external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=300)
    source_key: str = Field(
        default="", max_length=100
    )  # api:<token digest> | feed:<url digest> | file | editor
    url: str = Field(max_length=2000, index=True)
    title: str = Field(max_length=500)
    synopsis: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # Markdown
    synopsis_html: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default="")
    )  # sanitised
    author: str = Field(default="", max_length=200)
    published_at: datetime = Field(default_factory=utcnow, index=True)
    reading_minutes: int | None = None
    image_url: str | None = Field(default=None, max_length=2000)
    image_alt: str = Field(default="", max_length=500)
    source: str = Field(default="api", max_length=20)  # api | feed | file | editor
    held: bool = False  # held back from the next issue by an editor
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ArticleTag(SQLModel, table=True):
    article_id: int = Field(foreign_key="article.id", primary_key=True, ondelete="CASCADE")
    tag_id: int = Field(foreign_key="tag.id", primary_key=True, index=True, ondelete="CASCADE")


class FeedState(SQLModel, table=True):
    """Conditional-GET state per polled feed (ETag / Last-Modified)."""

    url: str = Field(primary_key=True, max_length=2000)
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=100)
    last_polled_at: datetime | None = None
    last_error: str = Field(default="", max_length=1000)


# --- issues ----------------------------------------------------------------


class Issue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    theme: str = Field(default="", max_length=200)
    title: str = Field(default="", max_length=300)  # "Issue 045: AI Ethics and Data 2026"
    subject: str = Field(default="", max_length=300)
    preheader: str = Field(default="", max_length=300)
    intro: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # Markdown
    status: str = Field(default="draft", max_length=20, index=True)
    window_start: datetime
    window_end: datetime
    slot_at: datetime | None = Field(default=None, unique=True)  # the weekly slot it was assembled for
    scheduled_for: datetime | None = None
    approved_at: datetime | None = None
    approved_by: str | None = Field(default=None, max_length=320)
    frozen_at: datetime | None = None
    send_started_at: datetime | None = None
    sent_at: datetime | None = None
    cancelled_at: datetime | None = None
    recipients: int = 0  # rows fanned out
    # Set while the fan-out is still adding rows behind a send that already
    # sends (``send.complete_fan_out``): the moment its lease runs out. A
    # fan-out whose process died is taken over after it; None once every
    # reader has a row.
    fanning_out_until: datetime | None = None
    sent_count: int = 0
    failed_count: int = 0
    skipped_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def label(self) -> str:
        return f"Issue {self.number:03d}"


class IssueArticle(SQLModel, table=True):
    """An article's place in an issue. ``snapshot`` (JSON) is the article's
    content as it was when the issue was approved: approved issues are
    rendered from it, so an article changed afterwards is not sent unreviewed.
    None while the issue is a draft."""

    issue_id: int = Field(foreign_key="issue.id", primary_key=True, ondelete="CASCADE")
    article_id: int = Field(foreign_key="article.id", primary_key=True, index=True)
    section: str = Field(max_length=80)  # tag slug
    position: int = 0
    snapshot: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class IssueRender(SQLModel, table=True):
    """The frozen output for one variant (a set of sections) of an issue:
    compiled once, then personalised per recipient by token substitution.
    ``nonce`` is the random part of this render's per-recipient markers
    (``rendering.placeholders``): made at freeze time, known to no stored text."""

    __table_args__ = (UniqueConstraint("issue_id", "variant"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True, ondelete="CASCADE")
    variant: str = Field(max_length=1000)  # sorted section slugs, "" = all
    subject: str = Field(max_length=300)
    html: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    nonce: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


# --- delivery --------------------------------------------------------------


class Delivery(SQLModel, table=True):
    """One row per issue × subscriber: the record of what happened to that mail.

    Shaped for the fan-out, which writes a million of these rows in one
    INSERT … SELECT (docs/performance.md, "Delivery"):

    - No foreign keys on ``issue_id`` and ``subscriber_id``. Their checks (a
      ``FOR KEY SHARE`` lookup of the issue and of the subscriber per row)
      were more than half of the fan-out's time on PostgreSQL. Nothing
      relied on their cascades: issues are never deleted, and erasing a
      reader (``readers.service.erase``) deletes the reader's delivery rows
      itself. A row whose reader disappears anyway is skipped by the sender
      with the reason "subscriber no longer exists".
    - The unique constraint leads with ``subscriber_id``, so it also serves
      the per-reader lookups (erase, data export, the editor's reader page)
      and no separate ``subscriber_id`` index is maintained; per-issue
      queries use ``ix_delivery_claim``, which leads with ``issue_id``.
      ON CONFLICT (issue_id, subscriber_id) still finds it (same columns).
    - The provider message id index is partial: fan-out rows have none yet,
      so it only grows as messages are accepted.
    - Local-time delivery: ``next_attempt_at`` starts as the row's "not
      before" moment (the slot's wall-clock time in ``timezone``, the zone it
      was scheduled in), so ``ix_delivery_claim`` already orders the rows by
      when they are due (``delivery.queue``). A row is only ever retried
      later than it was first due, so the moment is never brought forward.
    """

    __table_args__ = (
        UniqueConstraint("subscriber_id", "issue_id"),
        Index("ix_delivery_claim", "issue_id", "status", "next_attempt_at"),
        Index(
            "ix_delivery_provider_message_id",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
            sqlite_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int
    subscriber_id: int
    email: str = Field(max_length=320)
    topics: str = Field(default="", max_length=1000)
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=100)
    message_id: str | None = Field(default=None, max_length=300)
    provider_message_id: str | None = Field(default=None, max_length=300)
    last_error: str = Field(default="", max_length=1000)
    sent_at: datetime | None = None
    updated_at: datetime | None = None
    # the zone the row was scheduled in (local-time delivery), "" when sent to everyone at once
    timezone: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))


class TransactionalMail(SQLModel, table=True):
    """A one-off mail (a reader's confirmation or welcome, a notice to the
    editors) waiting for the sender: the outbox pattern.

    Written in the same transaction as the change that asks for it (the
    subscribe, the confirm, the scheduler's move), so the change and its mail
    commit or roll back together; then claimed with a lease, sent, retried
    and recorded by the sender exactly as a ``Delivery`` row is
    (``delivery.mailqueue``). The mail is rendered when it is sent, from
    ``template`` and the JSON ``context`` (which holds the reader's links, so
    it is emptied once the mail is sent)."""

    __table_args__ = (Index("ix_transactional_mail_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=30)  # confirmation | welcome | notice | …
    template: str = Field(max_length=60)  # templates/email/<template>.mjml.j2 and .txt.j2
    subject: str = Field(max_length=300)
    to_email: str = Field(max_length=320, index=True)
    to_name: str = Field(default="", max_length=200)
    subscriber_id: int | None = Field(default=None, index=True)  # None for mail to editors
    context: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    headers: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=100)
    message_id: str | None = Field(default=None, max_length=300)
    provider_message_id: str | None = Field(default=None, max_length=300)
    last_error: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None
    sent_at: datetime | None = None


class OutboxMessage(SQLModel, table=True):
    """Mail kept in the database by the ``outbox://`` transport."""

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(default="transactional", max_length=20)  # transactional | issue | test
    sender: str = Field(max_length=400)
    recipient: str = Field(max_length=400, index=True)
    subject: str = Field(max_length=1000)
    message_id: str = Field(max_length=300)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


# --- feedback --------------------------------------------------------------


class Event(SQLModel, table=True):
    """Something that happened to a subscriber or an issue: bounce_hard,
    bounce_soft, complaint, unsubscribe, subscribe, confirm, erase, …"""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=30, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    subscriber_id: int | None = Field(default=None, index=True)
    issue_id: int | None = Field(default=None, index=True)
    delivery_id: int | None = None
    provider: str = Field(default="", max_length=30)
    detail: str = Field(default="", max_length=1000)


class ClickCount(SQLModel, table=True):
    """Aggregate clicks per link per issue; never who clicked."""

    __table_args__ = (UniqueConstraint("issue_id", "url_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True, ondelete="CASCADE")
    url_hash: str = Field(max_length=64)
    url: str = Field(max_length=2000)
    count: int = 0


class WebhookReplay(SQLModel, table=True):
    """Tokens and ids of webhook deliveries already seen, to refuse replays."""

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=30)
    token: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, index=True)

    __table_args__ = (UniqueConstraint("provider", "token"),)


# --- editors and scheduling ------------------------------------------------


class Editor(SQLModel, table=True):
    """An editor account. ``failed_logins`` counts wrong passwords since the
    last login (atomically; shown to admins, never a lock a stranger can set).
    ``session_version`` is part of every session's user id: bumping it (logout,
    password change) ends every session the editor has."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=300)
    role: str = Field(default="editor", max_length=20)
    disabled_at: datetime | None = None  # a disabled account cannot log in (`editor disable`)
    failed_logins: int = 0
    session_version: int = 0
    last_login_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Failed logins per client and address typed (``key``: a SHA-256 of
    both): each failure doubles the wait before that client may try that
    address again. Per client, so a stranger slows only themselves."""

    key: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    blocked_until: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class SchedulerLock(SQLModel, table=True):
    """The single-runner lock on SQLite (PostgreSQL uses an advisory lock
    and records its holder here only for `newsletter schedule`)."""

    name: str = Field(primary_key=True, max_length=50)
    holder: str = Field(max_length=200)
    acquired_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)


class JobRun(SQLModel, table=True):
    """One row per job × slot: the idempotency record of the scheduler."""

    __table_args__ = (UniqueConstraint("job", "slot_at"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=50)
    slot_at: datetime
    state: str = Field(default="started", max_length=20)  # started | done | skipped | failed
    detail: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class SignupCount(SQLModel, table=True):
    """Sign-ups through the embedded box per day and per source (the origin, and
    the page path when known, of the site that showed it): counts only, never
    who signed up where."""

    __table_args__ = (UniqueConstraint("day", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    source: str = Field(max_length=300)
    count: int = 0


# --- the JSON API: tokens, idempotency, audit -------------------------------

API_SCOPES = (
    "articles:write",
    "issues:read",
    "issues:write",
    "issues:send",
    "subscribers:read",
    "subscribers:write",
    "stats:read",
)


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API. Only the SHA-256 of the secret is kept
    (the secret is shown once, when made); ``prefix`` is its first characters,
    shown in lists so a person can tell tokens apart. ``scopes`` is a sorted,
    comma-separated subset of API_SCOPES."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    scopes: str = Field(default="", max_length=300)
    created_by: str = Field(default="", max_length=320)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]


class IdempotencyRecord(SQLModel, table=True):
    """One ``Idempotency-Key`` of one token: the request it came with (a hash)
    and, once answered, the response, replayed to every retry. Written before
    the action runs (``status_code`` 0 = in progress), so two concurrent
    retries cannot both act: the unique key lets exactly one insert win."""

    __table_args__ = (UniqueConstraint("token_ref", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    token_ref: str = Field(max_length=80)
    key: str = Field(max_length=200)
    method: str = Field(max_length=10)
    path: str = Field(max_length=500)
    request_hash: str = Field(max_length=64)
    status_code: int = 0
    response_body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    response_headers: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class AuditEntry(SQLModel, table=True):
    """Who changed what, when: every change made through the API (actor
    ``token:<id> <name>``) and through the editor (actor ``editor:<email>``)."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=400)
    action: str = Field(max_length=100)
    target: str = Field(default="", max_length=500)
    status: int = 0  # the HTTP status of the answer
    detail: str = Field(default="", max_length=1000)


WEBHOOK_EVENTS = ("issue.sent", "issue.failed", "subscriber.confirmed", "subscriber.unsubscribed")


class WebhookEndpoint(SQLModel, table=True):
    """An outgoing webhook: events POSTed, signed with ``secret`` (HMAC-SHA256;
    kept as is, since signing needs it), to ``url``. Each delivery is a row of
    the transactional queue (kind ``webhook``), so it is retried and recorded
    like a mail (``delivery.webhooks``)."""

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    events: str = Field(default="", max_length=300)  # comma-separated WEBHOOK_EVENTS
    active: bool = True
    created_by: str = Field(default="", max_length=320)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def event_list(self) -> list[str]:
        return [e for e in self.events.split(",") if e]
