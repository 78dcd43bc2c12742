"""The sign-up box that other sites embed: its options, and a sign-up through it.

One box, two ways onto a page (``/embed`` in an iframe, ``/embed.js`` into
a placeholder), and two ways to send it (the iframe's plain form POST when
scripts are off, the JSON API otherwise). Both sends end in
``subscribe_from_box``, which calls the readers' service like every other
sign-up: the box adds only its cookie-less form token (``form_tokens``), the
consent source "embed" and a count for the site that showed it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from newsletter import tokens
from newsletter.readers import form_tokens, service, signups

FORM = "embed"
HEADLINE = "GET THE SIGNAL"
LINE = "AI agent intel, sourced, verified, and delivered by autonomous agents. Weekly."
BUTTON = "Subscribe"
THEMES = ("light", "dark", "auto")
LAYOUTS = ("full", "compact")
TOPICS = ("show", "hide")
ACCENT = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
MESSAGES = {  # what the box says, whichever way it was sent
    "accepted": "Check your inbox: if this address can receive our mail, a confirmation link is on its way.",
    "expired": "This form was open too long. Reload the page and try again.",
    "invalid": "This form did not come from a page of ours. Reload the page and try again.",
    "slow": "Too many sign-ups from here just now. Please wait a minute and try again.",
}
# What counts as a sign-up for the site that showed the box: a request that mails a
# confirmation link (a new address, or a pending or departed reader asking again) — not
# a reader who is already subscribed, a suppressed address, or one over its daily cap.
COUNTED = ("created", "resent")
RENEW_MAX_AGE = 30 * 24 * 3600
LIMITS = {"headline": 80, "line": 200, "button": 30, "page": 200}


@dataclass(frozen=True)
class BoxOptions:
    """What the publisher chose for one placement of the box. Anything
    unknown or malformed falls back to the default: a typo in a snippet
    gives the plain box, never an error on someone's article page."""

    topics: str = "show"  # show | hide: the topic checkboxes
    preset: tuple[str, ...] = ()  # topics ticked (shown) or sent (hidden); () = all
    theme: str = "light"
    accent: str = ""  # #rgb or #rrggbb; "" = the theme's own
    layout: str = "full"
    headline: str = HEADLINE
    line: str = LINE
    button: str = BUTTON
    page: str = ""  # path of the page showing the box, for the per-source count

    @property
    def on_accent(self) -> str:
        """Black or white, whichever reads better on the accent (WCAG luminance)."""
        if not self.accent:
            return ""
        digits = self.accent[1:]
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        return "#000000" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "#ffffff"

    def query(self) -> dict[str, str]:
        """The options that differ from the defaults, as URL parameters / data attributes."""
        out = {}
        for name, default in BoxOptions().__dict__.items():
            value = getattr(self, name)
            if value != default:
                out[name] = ",".join(value) if isinstance(value, tuple) else value
        return out


def _text(raw, limit: int, default: str) -> str:
    if not isinstance(raw, str):
        return default
    text = " ".join(raw.split())[:limit]  # no line breaks, no runs of blanks
    return text or default


def parse_options(args: Mapping[str, str], topic_slugs: list[str]) -> BoxOptions:
    """Options from URL parameters (or a placeholder's data attributes)."""
    get = args.get
    preset = tuple(s for s in service.split_topics(_text(get("preset"), 1000, "")) if s in topic_slugs)
    page = _text(get("page"), LIMITS["page"], "")
    return BoxOptions(
        topics=get("topics") if get("topics") in TOPICS else "show",
        preset=preset,
        theme=get("theme") if get("theme") in THEMES else "light",
        accent=get("accent") if isinstance(get("accent"), str) and ACCENT.fullmatch(get("accent")) else "",
        layout=get("layout") if get("layout") in LAYOUTS else "full",
        headline=_text(get("headline"), LIMITS["headline"], HEADLINE),
        line=_text(get("line"), LIMITS["line"], LINE),
        button=_text(get("button"), LIMITS["button"], BUTTON),
        page=page if page.startswith("/") else "",
    )


def posted_options(form: Mapping[str, str]) -> dict[str, str]:
    """The options a box's form carries back (``option-<name>`` fields, apart from
    the reader's own fields: ``topics`` is both an option and the reader's choice)."""
    return {k.removeprefix("option-"): v for k, v in form.items() if k.startswith("option-")}


def shows_topics(options: BoxOptions, tags) -> bool:
    """Does the box offer topic checkboxes (full layout, topics shown, some to show)?"""
    return options.topics == "show" and options.layout == "full" and bool(tags)


def with_page(options: BoxOptions, page: str) -> BoxOptions:
    return options if options.page else replace(options, page=page)


def make_token(settings, origin: str | None, page: str, needs_topic: bool) -> str:
    """The form token of one rendering, bound to the site that showed it and to
    whether it offered topic checkboxes (so no sender can skip choosing one)."""
    return form_tokens.make_form_token(settings, FORM, {"o": origin or "", "p": page, "t": needs_topic})


def renew_token(settings, old_token) -> str:
    """A fresh token bound to the same site as ``old_token`` (if it was ours,
    however old), for the box shown again after a refused sign-up."""
    try:
        bound = form_tokens.check_form_token(settings, old_token, FORM, max_age=RENEW_MAX_AGE)
    except tokens.TokenError:
        bound = {}
    return make_token(settings, str(bound.get("o") or ""), str(bound.get("p") or ""), bool(bound.get("t")))


@dataclass
class BoxSignup:
    """A sign-up as the box sends it (form fields or JSON: the same names)."""

    email: object
    form_token: object
    topics: object = ()
    website: object = ""  # the honeypot
    timezone: object = ""  # the reader's IANA zone (Intl); an unknown one falls back, counted

    @classmethod
    def from_mapping(cls, data: Mapping, topics) -> BoxSignup:
        return cls(
            email=data.get("email"),
            form_token=data.get("form_token"),
            topics=topics,
            website=data.get("website") or "",
            timezone=data.get("timezone") or "",
        )


def subscribe_from_box(settings, signup: BoxSignup, ip: str | None) -> None:
    """Sign a reader up through the box, or raise.

    ``tokens.TokenExpired`` / ``tokens.TokenError``: the form is too old or
    not ours (checked first: a bot without a token learns nothing more);
    ``service.InvalidInput``: the address or topics are wrong. Anything else
    ends in the same answer whatever the address's state (no enumeration);
    a filled honeypot is accepted and does nothing."""
    bound = form_tokens.check_form_token(settings, signup.form_token, FORM)
    if signup.website:
        return
    if bound.get("t") and not signup.topics:  # the box offered topics: one must be ticked
        raise service.InvalidInput("Choose at least one topic.", "topics")
    outcome = service.subscribe(
        settings,
        email=signup.email,
        topics=signup.topics or (),
        timezone=signup.timezone or None,
        source="embed",
        consent_text=service.CONSENT_TEXT,
        ip=ip,
    )
    if outcome.result in COUNTED:
        signups.count_signup(signups.source_of(str(bound.get("o") or ""), str(bound.get("p") or "")))
