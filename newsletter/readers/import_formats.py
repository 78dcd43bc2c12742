"""Other services' exports: how each one is recognised by its header row,
and what its columns become (address, name, topics, status, dates).

The layouts follow each service's documentation of its export (or, where
the export file itself is not documented column by column, of the fields
its API and help pages name for the same records); docs/operating.md,
"Moving from another service", lists the source of each mapping. What
matters most is the status: a reader who unsubscribed, bounced, complained
or was blocklisted at the old service comes in *not active*, whatever else
the row says, and an unknown status value rejects the line rather than
guessing "active".

Statuses a row can have here: ``active``, ``unconfirmed`` (never confirmed
at the old service), ``unsubscribed``, ``bounced``, ``complained``,
``blocklisted``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dateutil import parser as dateparser

ACTIVE, UNCONFIRMED = "active", "unconfirmed"
OPTED_OUT = ("unsubscribed", "bounced", "complained", "blocklisted")
STATUSES = (ACTIVE, UNCONFIRMED, *OPTED_OUT)


class RowError(ValueError):
    """A line whose values cannot be imported safely (an unknown status)."""


@dataclass
class Record:
    """One reader as the file describes them. ``name``/``topics`` None: the
    file says nothing (an update keeps what we have)."""

    email: str
    name: str | None
    tags: list[str]
    topics: str | None  # our own export's topics column: slugs, checked strictly
    status: str
    detail: str  # why that status, in words ("cleaned (bounced) at Mailchimp")
    consent_at: datetime | None
    left_at: datetime | None


class Columns:
    """The header row: finds a column by any of its names, case-insensitively."""

    def __init__(self, header: list[str]):
        self.index: dict[str, int] = {}
        for i, name in enumerate(header):
            self.index.setdefault(name.strip().lstrip("\ufeff").lower(), i)
        self.names = frozenset(self.index)
        self.width = len(header)
        self._found: dict[tuple[str, ...], int | None] = {}  # names → the first present column (per file)

    def has(self, *names: str) -> bool:
        return self._first(names) is not None

    def _first(self, names: tuple[str, ...]) -> int | None:
        try:
            return self._found[names]
        except KeyError:
            found = self._found[names] = next((self.index[n] for n in names if n in self.index), None)
            return found

    def get(self, row: list[str], *names: str) -> str:
        i = self._first(names)
        return row[i].strip() if i is not None and i < len(row) else ""


# --- values ---------------------------------------------------------------------------


def when(value: str) -> datetime | None:
    """A time as services write it (ISO 8601, "2018-02-05 19:28:23", Go's
    "2024-01-02 15:04:05.123 +0000 UTC", "…UTC"); naive times are UTC.
    An unreadable time is None: it never rejects the reader."""
    value = value.strip().removesuffix(" UTC") if value else ""
    if not value:
        return None
    if value.endswith(" +0000"):
        value = value[: -len(" +0000")] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)  # most services write ISO 8601: the fast path
    except ValueError:
        try:
            moment = dateparser.parse(value)
        except (ValueError, OverflowError):
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "yes", "1", "y", "t")


def full_name(*parts: str) -> str | None:
    name = " ".join(p.strip() for p in parts if p and p.strip())
    return name or None


def split_tags(value: str) -> list[str]:
    """Tags as services write them: a JSON list, or names separated by commas
    (Mailchimp quotes each one: ``"Editors","VIP"``)."""
    value = value.strip()
    if not value:
        return []
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [str(i).strip() for i in items if str(i).strip()]
    return [t.strip().strip('"').strip() for t in value.split(",") if t.strip().strip('"').strip()]


def status_from(value: str, vocabulary: dict[str, tuple[str, str]], service: str) -> tuple[str, str]:
    """(status, detail) for a status value; unknown values reject the line."""
    key = value.strip().lower()
    if not key:
        return ACTIVE, ""
    if key not in vocabulary:
        known = ", ".join(sorted(vocabulary))
        raise RowError(f"unknown {service} status {value[:40]!r} (known: {known}); not imported")
    status, detail = vocabulary[key]
    return status, detail


def file_hint(name: str) -> tuple[str, str] | None:
    """The status a file's name gives all its rows (a ZIP of Mailchimp's or
    Buttondown's export holds one file per status)."""
    base = name.rsplit(":", 1)[-1].rsplit("/", 1)[-1].lower()
    if "nonsubscribed" in base:
        return UNCONFIRMED, "never subscribed (non-subscribed contacts file)"
    if "unsubscribe" in base:
        return "unsubscribed", "unsubscribed (unsubscribed contacts file)"
    if "cleaned" in base:
        return "bounced", "cleaned, undeliverable (cleaned contacts file)"
    return None


# --- the layouts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    key: str  # the --from value
    label: str
    email: tuple[str, ...]  # the address column's names (lower case)
    identify: Callable[[Columns], bool]
    read: Callable[[Columns, list[str]], Record]  # status without the file's hint


def _record(cols, row, email, *, name=None, tags=(), topics=None, status=(ACTIVE, ""), consent="", left=""):
    return Record(
        email=cols.get(row, *email),
        name=name,
        tags=list(tags),
        topics=topics,
        status=status[0],
        detail=status[1],
        consent_at=when(consent),
        left_at=when(left),
    )


OURS = {
    "active": (ACTIVE, ""),
    "pending": (UNCONFIRMED, "had not confirmed"),
    "unsubscribed": ("unsubscribed", "unsubscribed"),
    "bounced": ("bounced", "bounced"),
    "complained": ("complained", "complained"),
}


def _ours(cols: Columns, row: list[str]) -> Record:
    topics = cols.get(row, "topics") if cols.has("topics") else None
    return _record(
        cols, row, ("email",),
        name=cols.get(row, "name") if cols.has("name") else None,
        topics=topics,
        status=status_from(cols.get(row, "status"), OURS, "GET THE SIGNAL"),
        consent=cols.get(row, "consent_at", "confirmed_at", "created_at"),
        left=cols.get(row, "unsubscribed_at"),
    )  # fmt: skip


GENERIC = {
    **{k: (ACTIVE, "") for k in ("active", "subscribed", "confirmed", "enabled", "yes", "true", "opted in")},
    **{k: (UNCONFIRMED, "had not confirmed") for k in ("pending", "unconfirmed", "not confirmed")},
    **{
        k: ("unsubscribed", f"{k}")
        for k in (
            "unsubscribed",
            "opted out",
            "opted-out",
            "optout",
            "disabled",
            "cancelled",
            "removed",
            "no",
            "false",
        )
    },
    **{k: ("bounced", f"{k}") for k in ("bounced", "cleaned", "undeliverable", "invalid", "hard bounce")},
    **{k: ("complained", f"{k}") for k in ("complained", "spam", "junk", "abuse")},
    **{k: ("blocklisted", f"{k}") for k in ("blocklisted", "blacklisted", "blocked", "banned", "suppressed")},
}
GENERIC_EMAIL = ("email", "e-mail", "email address", "e-mail address", "email_address", "mail")


def _generic(cols: Columns, row: list[str]) -> Record:
    first = cols.get(row, "first name", "first_name", "firstname", "given name")
    last = cols.get(row, "last name", "last_name", "lastname", "surname", "family name")
    has_name = cols.has(
        "name", "full name", "first name", "first_name", "firstname", "last name", "last_name"
    )
    name = cols.get(row, "name", "full name") or full_name(first, last) or ""
    return _record(
        cols, row, GENERIC_EMAIL,
        name=name if has_name else None,
        topics=cols.get(row, "topics") if cols.has("topics") else None,
        tags=split_tags(cols.get(row, "tags", "labels", "groups")),
        status=status_from(cols.get(row, "status", "state"), GENERIC, "status"),
        consent=cols.get(row, "consent_at", "subscribed_at", "created_at", "date"),
        left=cols.get(row, "unsubscribed_at"),
    )  # fmt: skip


def _mailchimp(cols: Columns, row: list[str]) -> Record:
    # Mailchimp's audience export: one file per status (subscribed, unsubscribed,
    # cleaned, non-subscribed); the unsubscribed and cleaned files add their time.
    reason = cols.get(row, "unsub_reason", "unsub_reason_other").lower()
    status = (ACTIVE, "")
    if cols.get(row, "clean_time"):
        status = ("bounced", "cleaned (undeliverable) at Mailchimp")
    elif cols.get(row, "unsub_time"):
        complained = "abuse" in reason or "spam" in reason
        status = (
            ("complained", "reported abuse at Mailchimp")
            if complained
            else ("unsubscribed", "unsubscribed at Mailchimp")
        )
    return _record(
        cols, row, ("email address",),
        name=full_name(cols.get(row, "first name", "fname"), cols.get(row, "last name", "lname")),
        tags=split_tags(cols.get(row, "tags")),
        status=status,
        consent=cols.get(row, "confirm_time") or cols.get(row, "optin_time"),
        left=cols.get(row, "clean_time") or cols.get(row, "unsub_time"),
    )  # fmt: skip


def _substack(cols: Columns, row: list[str]) -> Record:
    disabled = truthy(cols.get(row, "email_disabled"))
    return _record(
        cols, row, ("email",),
        name=cols.get(row, "name") or None,
        status=("unsubscribed", "turned email off at Substack (email_disabled)") if disabled else (ACTIVE, ""),
        consent=cols.get(row, "created_at"),
    )  # fmt: skip


def _ghost(cols: Columns, row: list[str]) -> Record:
    status = (ACTIVE, "")
    if truthy(cols.get(row, "email_disabled")):
        status = ("bounced", "email disabled at Ghost (bounce or spam complaint)")
    elif cols.get(row, "deleted_at"):
        status = ("unsubscribed", "deleted at Ghost")
    elif cols.has("subscribed_to_emails") and not truthy(cols.get(row, "subscribed_to_emails")):
        status = ("unsubscribed", "not subscribed to emails at Ghost (subscribed_to_emails false)")
    return _record(
        cols, row, ("email",),
        name=cols.get(row, "name") or None,
        tags=split_tags(cols.get(row, "labels")),
        status=status,
        consent=cols.get(row, "created_at"),
    )  # fmt: skip


LISTMONK = {
    "enabled": (ACTIVE, ""),
    "disabled": ("unsubscribed", "disabled at listmonk"),
    "blocklisted": ("blocklisted", "blocklisted at listmonk"),
}


def _listmonk(cols: Columns, row: list[str]) -> Record:
    return _record(
        cols, row, ("email",),
        name=cols.get(row, "name") or None,
        status=status_from(cols.get(row, "status"), LISTMONK, "listmonk"),
        consent=cols.get(row, "created_at"),
    )  # fmt: skip


BUTTONDOWN = {
    **{
        k: (ACTIVE, "")
        for k in ("regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "past_due")
    },
    "unactivated": (UNCONFIRMED, "had not confirmed at Buttondown (unactivated)"),
    "unsubscribed": ("unsubscribed", "unsubscribed at Buttondown"),
    "removed": ("unsubscribed", "removed by the newsletter at Buttondown"),
    "spammy": ("blocklisted", "deemed spammy by Buttondown"),
    "undeliverable": ("bounced", "undeliverable at Buttondown"),
    "complained": ("complained", "complained at Buttondown"),
}


def _buttondown(cols: Columns, row: list[str]) -> Record:
    metadata = cols.get(row, "metadata")
    name = None
    if metadata.startswith("{"):
        try:
            fields = json.loads(metadata)
        except ValueError:
            fields = {}
        if isinstance(fields, dict):
            name = full_name(
                str(fields.get("first_name") or fields.get("name") or ""), str(fields.get("last_name") or "")
            )
    return _record(
        cols, row, ("email_address", "email"),
        name=name,
        tags=split_tags(cols.get(row, "tags")),
        status=status_from(cols.get(row, "subscriber_type", "type"), BUTTONDOWN, "Buttondown"),
        consent=cols.get(row, "creation_date", "created_at"),
        left=cols.get(row, "unsubscription_date"),
    )  # fmt: skip


KIT = {
    "active": (ACTIVE, ""),
    "cold": (ACTIVE, ""),  # subscribed, just not opening lately
    "inactive": (UNCONFIRMED, "had not confirmed at Kit (inactive)"),
    "cancelled": ("unsubscribed", "unsubscribed at Kit (cancelled)"),
    "bounced": ("bounced", "bounced at Kit"),
    "complained": ("complained", "complained at Kit"),
}


def _kit(cols: Columns, row: list[str]) -> Record:
    return _record(
        cols, row, ("email_address", "email"),
        name=full_name(cols.get(row, "first_name", "first name"), cols.get(row, "last_name", "last name")),
        tags=split_tags(cols.get(row, "tags")),
        status=status_from(cols.get(row, "state", "status"), KIT, "Kit"),
        consent=cols.get(row, "created_at", "subscribed_at"),
    )  # fmt: skip


BEEHIIV = {
    "active": (ACTIVE, ""),
    "inactive": ("unsubscribed", "unsubscribed at beehiiv (inactive)"),
    "pending": (UNCONFIRMED, "had not confirmed at beehiiv (pending)"),
    "validating": (UNCONFIRMED, "still being validated at beehiiv"),
    "needs_attention": (UNCONFIRMED, "flagged as needing attention at beehiiv"),
    "invalid": ("bounced", "invalid address at beehiiv"),
}


def _beehiiv(cols: Columns, row: list[str]) -> Record:
    status = status_from(cols.get(row, "status"), BEEHIIV, "beehiiv")
    if cols.get(row, "unsubscribed_at") and status[0] == ACTIVE:
        status = ("unsubscribed", "unsubscribed at beehiiv (unsubscribed_at)")
    return _record(
        cols, row, ("email",),
        name=full_name(cols.get(row, "first name", "first_name"), cols.get(row, "last name", "last_name")),
        status=status,
        consent=cols.get(row, "created_at"),
        left=cols.get(row, "unsubscribed_at"),
    )  # fmt: skip


MAILERLITE = {
    "active": (ACTIVE, ""),
    "unsubscribed": ("unsubscribed", "unsubscribed at MailerLite"),
    "unconfirmed": (UNCONFIRMED, "had not confirmed at MailerLite"),
    "bounced": ("bounced", "bounced at MailerLite"),
    "junk": ("complained", "marked as junk (spam complaint) at MailerLite"),
}


def _mailerlite(cols: Columns, row: list[str]) -> Record:
    return _record(
        cols, row, ("subscriber", "email"),
        name=full_name(cols.get(row, "name"), cols.get(row, "last name", "last_name")),
        tags=split_tags(cols.get(row, "groups")),
        status=status_from(cols.get(row, "status", "type"), MAILERLITE, "MailerLite"),
        consent=cols.get(row, "opted_in_at", "subscribed_at", "subscribed", "date subscribed"),
        left=cols.get(row, "unsubscribed_at", "unsubscribed", "date unsubscribed"),
    )  # fmt: skip


def _names(*required: str, any_of: tuple[str, ...] = ()) -> Callable[[Columns], bool]:
    return lambda cols: all(n in cols.names for n in required) and (not any_of or cols.has(*any_of))


LAYOUTS = (
    Layout("signal", "GET THE SIGNAL", ("email",), _names("email", "consent_source"), _ours),
    Layout(
        "mailchimp", "Mailchimp", ("email address",),
        _names("email address", any_of=("member_rating", "optin_time", "confirm_time", "leid", "euid")), _mailchimp,
    ),
    Layout("substack", "Substack", ("email",), _names("email", any_of=("email_disabled", "active_subscription")), _substack),
    Layout("ghost", "Ghost", ("email",), _names("email", "subscribed_to_emails"), _ghost),
    Layout("listmonk", "listmonk", ("email",), _names("email", "uuid", "attributes", "status"), _listmonk),
    Layout(
        "buttondown", "Buttondown", ("email_address", "email"),
        lambda c: c.has("email_address", "email") and (c.has("subscriber_type") or "creation_date" in c.names),
        _buttondown,
    ),
    Layout("kit", "Kit (ConvertKit)", ("email_address", "email"), _names("state", any_of=("email_address", "email")), _kit),
    Layout("beehiiv", "beehiiv", ("email",), _names("email", "status", any_of=("tier", "free tier", "premium tier")), _beehiiv),
    Layout(
        "mailerlite", "MailerLite", ("subscriber", "email"),
        lambda c: "subscriber" in c.names or (c.has("email") and c.has("opted_in_at", "groups") and c.has("status")),
        _mailerlite,
    ),
    Layout("csv", "CSV", GENERIC_EMAIL, lambda c: c.has(*GENERIC_EMAIL), _generic),
)  # fmt: skip
BY_KEY = {layout.key: layout for layout in LAYOUTS}
SOURCE_NAMES = tuple(BY_KEY)


def recognise(header: list[str]) -> Layout | None:
    """The layout a header row belongs to (the first that matches, most specific first)."""
    cols = Columns(header)
    return next((layout for layout in LAYOUTS if layout.identify(cols)), None)


def layout_for(header: list[str], source: str | None) -> Layout:
    """The named layout (``--from``), checked against the header, or the recognised one."""
    cols = Columns(header)
    if source:
        layout = BY_KEY.get(source.lower())
        if layout is None:
            raise LookupError(f"unknown source {source!r}; known: {', '.join(SOURCE_NAMES)}")
        if not cols.has(*layout.email):
            raise LookupError(
                f"this is not a {layout.label} export: the header has no {' or '.join(repr(n) for n in layout.email)} column"
            )
        return layout
    layout = recognise(header)
    if layout is None:
        raise LookupError(
            "the header row has no email column (expected 'email', or the header of a Mailchimp, Substack, Ghost, "
            "listmonk, Buttondown, Kit, beehiiv or MailerLite export)"
        )
    return layout
