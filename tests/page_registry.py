"""Every page a person can open, read from the app's URL map.

``tests/test_browser_pages.py`` opens each of them in Chromium at 375 and
1280 px, runs axe-core over it and checks it does not scroll sideways. The
list is checked against the URL map: a GET route that is neither in ``PAGES``
nor in ``EXCLUDED`` (with the reason) fails the test by name, so a page added
later is covered the day it is added. Adding one is one line here:

    "editor.tokens": Page("/editor/tokens", "admin"),

Paths are filled from the world the test builds (``{draft}``, ``{sent}``,
``{subscriber}``, ``{prefs}``, ``{unsub}``, ``{confirm}``, ``{mail}``, ``{notice}`` —
see ``World``). ``kind`` is "page" (the site's own HTML) or "mail" (email
HTML: judged by the rules that apply to mail, colour contrast first).
A route may list several states (a link problem, a failed form).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    path: str
    who: str = "anon"  # "anon" or "admin" (logged in before it is opened)
    kind: str = "page"  # "page" or "mail"


PAGES: dict[str, tuple[Page, ...] | Page] = {
    # the reader's pages
    "readers.index": Page("/"),
    "readers.subscribe_get": Page("/subscribe"),
    "readers.check_inbox": Page("/subscribe/check-your-inbox"),
    "readers.confirm": (Page("/confirm/{confirm}"), Page("/confirm/not-a-token")),
    "readers.preferences": (Page("/preferences/{prefs}"), Page("/preferences/not-a-token")),
    "readers.unsubscribe": (Page("/unsubscribe/{unsub}"), Page("/unsubscribe/not-a-token")),
    "readers.archive_index": Page("/issues"),
    "readers.archive_issue": Page("/issues/{sent}"),
    "readers.embed": (Page("/embed"), Page("/embed?theme=dark&layout=compact")),
    "readers.outbox": Page("/outbox", "admin"),
    "readers.outbox_message": Page("/outbox/{mail}", "admin"),
    "readers.outbox_html": (
        Page("/outbox/{mail}/html", "admin", kind="mail"),  # the issue as delivered
        Page("/outbox/{notice}/html", "admin", kind="mail"),  # a one-off mail (the preferences link)
    ),
    # the editors' workspace
    "editor.login": Page("/editor/login"),
    "editor.home": Page("/editor/", "admin"),
    "editor.dashboard": Page("/editor/dashboard", "admin"),
    "editor.issues": Page("/editor/issues", "admin"),
    "editor.issue": (Page("/editor/issues/{draft}", "admin"), Page("/editor/issues/{sent}", "admin")),
    "editor.issue_preview": (
        Page("/editor/issues/{draft}/preview", "admin"),
        Page("/editor/issues/{draft}/preview?width=mobile&view=text", "admin"),
    ),
    "editor.issue_preview_html": Page("/editor/issues/{draft}/preview.html", "admin", kind="mail"),
    "editor.issue_send": Page("/editor/issues/{approved}/send", "admin"),
    "editor.articles": Page("/editor/articles", "admin"),
    "editor.subscribers": Page("/editor/subscribers", "admin"),
    "editor.subscriber": Page("/editor/subscribers/{subscriber}", "admin"),
    "editor.subscriber_erase": Page("/editor/subscribers/{subscriber}/erase", "admin"),
    "editor.subscribers_import": Page("/editor/subscribers/import", "admin"),
    "editor.mail_queue": Page("/editor/mail", "admin"),
    "editor.outbox": Page("/editor/outbox", "admin"),
    "editor.outbox_message": Page("/editor/outbox/{mail}", "admin"),
    "editor.outbox_html": Page("/editor/outbox/{mail}/body.html", "admin", kind="mail"),
    "editor.editors": Page("/editor/editors", "admin"),
    "editor.settings_page": Page("/editor/settings", "admin"),
    "editor.embed_box": Page("/editor/embed", "admin"),
    "editor.api_tokens": Page("/editor/api-tokens", "admin"),
    "editor.audit_log": Page("/editor/audit", "admin"),
    "editor.webhooks_page": Page("/editor/webhooks", "admin"),
    # the API's one page for people
    "api.reference": Page("/api/v1/reference"),
}

EXCLUDED: dict[str, str] = {
    "static": "files (CSS, JS), not pages",
    "healthz": "JSON for load balancers",
    "api.*": "the JSON API: no HTML (its reference page is listed above)",
    "feedback.click": "a redirect to the article (tested in test_feedback_clicks.py)",
    "readers.archive_feed": "an Atom feed, for feed readers",
    "readers.embed_box": "the box as an HTML fragment for embed.js; checked on a host page in test_browser_embed.py",
    "readers.embed_js": "a script file",
    "readers.embed_css": "a style sheet",
    "editor.issue_progress": "JSON polled by the send page",
    "editor.subscribers_export": "a CSV download",
    "editor.settings_doctor": "the settings page with the pre-flight run: asks DNS and the mail server",
}


def excluded(endpoint: str) -> str | None:
    """The reason ``endpoint`` is not a page, or None."""
    if endpoint in EXCLUDED:
        return EXCLUDED[endpoint]
    for pattern, reason in EXCLUDED.items():
        if pattern.endswith(".*") and endpoint.startswith(pattern[:-1]):
            return reason
    return None


def pages_of(app) -> list[tuple[str, Page]]:
    """(endpoint, page) for every GET route of ``app``; fails on a route that is
    neither listed nor excluded, and on a listed endpoint the app no longer has."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    missing = sorted(e for e in endpoints if e not in PAGES and excluded(e) is None)
    assert not missing, (
        f"GET routes with no entry in tests/page_registry.py: {', '.join(missing)}. "
        "Add each to PAGES (one line: its path and who opens it) or to EXCLUDED with the reason."
    )
    stale = sorted(set(PAGES) - endpoints)
    assert not stale, f"tests/page_registry.py lists endpoints the app does not have: {', '.join(stale)}"
    found = []
    for endpoint in sorted(PAGES):
        states = PAGES[endpoint]
        for page in states if isinstance(states, tuple) else (states,):
            found.append((endpoint, page))
    return found
