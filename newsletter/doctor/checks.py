"""``newsletter doctor``: the checks an operator gets wrong before the first
send, each with pass, warn or fail and the fix. The CLI and the editor's
settings page run the same ``run_checks``; the checks run side by side, so
the report takes as long as the slowest one (each has a timeout).

Besides the DNS (``doctor.dns``): the database is migrated; the secret key
is strong; https ``BASE_URL`` answers; the one-click unsubscribe endpoint
answers a POST as RFC 8058 asks; the transport is reachable and takes the
credentials (``transport.probe()``: SMTP EHLO/STARTTLS/AUTH, or the ESP's
cheapest authenticated call); the configured ESP's webhook secrets are set;
the bounce mailbox logs in; a live scheduler holds the lock; no
transactional mail is stuck.
"""

from __future__ import annotations

import math
import os
import socket
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from sqlalchemy.exc import SQLAlchemyError

from newsletter import clock, db
from newsletter.config import Settings
from newsletter.delivery import mailqueue
from newsletter.delivery.transports import make_transport
from newsletter.doctor.dns import ESPS, dns_findings, provider
from newsletter.doctor.report import FAIL, PASS, SKIP, WARN, Finding
from newsletter.feedback.mailbox import check_login
from newsletter.feedback.webhooks import declared_secrets
from newsletter.readers import links
from newsletter.scheduling.lock import lock_state

HTTP_TIMEOUT = 10
WEAK_SECRETS = ("change-me", "changeme", "secret", "password", "example", "test-secret")
MIN_SECRET_BITS = 128
STUCK_MAIL = timedelta(minutes=15)


def _finding(check: str, title: str, run: Callable[[], Finding]) -> Finding:
    """A check that raised is a failed check with the reason, never a crash of the report."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - reported as the finding
        return Finding(check, title, FAIL, f"{exc.__class__.__name__}: {exc}", "See the detail.")


# --- this installation -------------------------------------------------------------------


def check_database(settings: Settings) -> Finding:
    title = "Database migrated"
    try:
        current, heads = db.revisions()
    except SQLAlchemyError as exc:
        return Finding(
            "database",
            title,
            FAIL,
            f"cannot reach the database: {exc.__class__.__name__}",
            "Check NEWSLETTER_DATABASE_URL.",
        )
    if current == heads:
        return Finding("database", title, PASS, f"at {', '.join(sorted(heads))}")
    return Finding(
        "database", title, FAIL, f"at {', '.join(sorted(current)) or 'nothing'}; the code needs {', '.join(sorted(heads))}",
        "Run `newsletter db upgrade` (serve and the web unit do it at start).",
    )  # fmt: skip


def _entropy_bits(secret: str) -> float:
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


def check_secret_key(settings: Settings) -> Finding:
    title = "Secret key strong"
    key = settings.secret_key
    fix = "Set NEWSLETTER_SECRET_KEY to a long random string: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if any(weak in key.lower() for weak in WEAK_SECRETS):
        return Finding("secret-key", title, FAIL, "the secret key is a placeholder or a common word", fix)
    bits = _entropy_bits(key)
    if len(key) < 32 or bits < MIN_SECRET_BITS:
        return Finding(
            "secret-key", title, FAIL, f"{len(key)} characters, about {bits:.0f} bits: too easy to guess", fix
        )
    source = "NEWSLETTER_SECRET_KEY"
    generated = os.path.join(settings.instance_path, "secret_key")
    if os.path.exists(generated) and open(generated).read().strip() == key:
        source = f"generated into {generated}"
        if os.stat(generated).st_mode & 0o077:
            return Finding(
                "secret-key", title, FAIL, f"{generated} can be read by other users", f"chmod 600 {generated}"
            )
        if settings.is_production:
            return Finding("secret-key", title, WARN, f"{source}: fine, but lost with that folder", fix)
    return Finding("secret-key", title, PASS, f"{len(key)} characters, about {bits:.0f} bits ({source})")


def check_base_url(settings: Settings) -> Finding:
    url = settings.base_url
    title = f"BASE_URL {url} reachable over https"
    https = urlsplit(url).scheme == "https"
    try:
        response = requests.get(f"{url}/healthz", timeout=HTTP_TIMEOUT, allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        return Finding(
            "base-url", title, FAIL, f"TLS failed: {exc}", "Install a valid certificate on the reverse proxy."
        )
    except requests.RequestException as exc:
        return Finding(
            "base-url", title, FAIL, f"{url} does not answer: {exc.__class__.__name__}",
            "Start the web app and the reverse proxy, and check NEWSLETTER_BASE_URL is the public address.",
        )  # fmt: skip
    if response.status_code != 200:
        return Finding(
            "base-url",
            title,
            FAIL,
            f"GET {url}/healthz answered {response.status_code}",
            "Check the proxy forwards to the app.",
        )
    if not https:
        status = FAIL if settings.is_production else WARN
        return Finding(
            "base-url", title, status, f"{url} answers, but over plain http: links in mail travel in clear",
            "Put https in front (deploy/Caddyfile) and set NEWSLETTER_BASE_URL=https://…",
        )  # fmt: skip
    return Finding("base-url", title, PASS, f"{url}/healthz answered 200 over https")


def check_one_click(settings: Settings) -> Finding:
    """RFC 8058: a mailbox provider POSTs ``List-Unsubscribe=One-Click`` to the
    header's URL, without cookies, and expects 2xx with no redirect. The
    token is a genuine one for a reader id that never exists, so nobody is
    unsubscribed by the check."""
    title = "One-click unsubscribe answers (RFC 8058)"
    url = links.unsubscribe_url(settings, 0)
    try:
        response = requests.post(
            url, data={"List-Unsubscribe": "One-Click"}, timeout=HTTP_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        return Finding(
            "one-click",
            title,
            FAIL,
            f"POST {settings.base_url}/unsubscribe/… failed: {exc.__class__.__name__}",
            "Start the web app; check the proxy passes POSTs through.",
        )
    if 200 <= response.status_code < 300:
        return Finding(
            "one-click",
            title,
            PASS,
            f"POST {settings.base_url}/unsubscribe/… answered {response.status_code}",
        )
    return Finding(
        "one-click", title, FAIL, f"POST {settings.base_url}/unsubscribe/… answered {response.status_code}",
        "The proxy must pass the POST to the app untouched: no redirect, login or CSRF in front of /unsubscribe/.",
    )  # fmt: skip


# --- sending and feedback ---------------------------------------------------------------


def check_transport(settings: Settings) -> Finding:
    scheme = provider(settings)
    title = f"Transport {scheme}:// reachable, credentials accepted"
    transport = make_transport(settings.transport, settings)
    try:
        probe = transport.probe()
    finally:
        transport.close()
    if probe.status == WARN and scheme == "outbox" and not settings.is_production:
        return Finding(
            "transport", title, WARN, probe.detail, "Set NEWSLETTER_TRANSPORT to your SMTP server or ESP."
        )
    fix = {
        PASS: "",
        WARN: "See the detail.",
        FAIL: "Check NEWSLETTER_TRANSPORT: host, port, TLS and credentials.",
    }
    return Finding(
        "transport",
        title,
        FAIL if scheme == "outbox" else probe.status,
        probe.detail,
        fix[probe.status] or "",
    )


def check_webhooks(settings: Settings) -> Finding:
    scheme = provider(settings)
    title = f"Webhook secrets for {scheme}"
    declared = declared_secrets()
    if scheme == "outbox":
        return Finding("webhooks", title, SKIP, "outbox:// sends nothing, so nothing bounces")
    if scheme not in declared:
        return Finding(
            "webhooks",
            title,
            SKIP,
            f"{scheme}:// has no webhook: bounces come back by mail (NEWSLETTER_BOUNCE_MAILBOX)",
        )
    missing = [name for name in declared[scheme] if not settings.webhook_secrets.get(name)]
    if missing:
        names = ", ".join(f"NEWSLETTER_{n.upper()}" for n in missing)
        return Finding(
            "webhooks", title, FAIL, f"{names} not set: /webhooks/{scheme} refuses every bounce and complaint",
            f"Set {names} from {scheme}'s webhook settings, and point the webhook at {settings.base_url}/webhooks/{scheme}.",
        )  # fmt: skip
    return Finding(
        "webhooks",
        title,
        PASS,
        f"{len(declared[scheme])} secret(s) set; webhook URL {settings.base_url}/webhooks/{scheme}",
    )


def check_bounce_mailbox(settings: Settings) -> Finding:
    title = "Bounce mailbox logs in"
    if not settings.bounce_mailbox:
        if provider(settings) == "outbox":
            return Finding("bounce-mailbox", title, SKIP, "outbox:// sends nothing, so nothing bounces")
        if provider(settings) in ESPS:
            return Finding(
                "bounce-mailbox", title, SKIP, f"not set: {provider(settings)} reports bounces by webhook"
            )
        return Finding(
            "bounce-mailbox", title, WARN, "NEWSLETTER_BOUNCE_MAILBOX is not set: bounces over SMTP are never read",
            "Set NEWSLETTER_BOUNCE_MAILBOX=imaps://user:pass@host/INBOX (and NEWSLETTER_BOUNCE_RETURN_PATH for VERP).",
        )  # fmt: skip
    try:
        detail = check_login(settings)
    except Exception as exc:  # noqa: BLE001 - imaplib, ssl and socket errors alike
        return Finding(
            "bounce-mailbox",
            title,
            FAIL,
            f"{exc.__class__.__name__}: {exc}",
            "Check NEWSLETTER_BOUNCE_MAILBOX: host, port, user, password, folder.",
        )
    return Finding("bounce-mailbox", title, PASS, detail)


def check_scheduler(settings: Settings) -> Finding:
    title = "Scheduler running (holds the lock)"
    state = lock_state(db.get_engine())
    fix = "Start `newsletter scheduler` beside the web app (or run `newsletter serve`)."
    if not state.get("holder"):
        return Finding(
            "scheduler", title, FAIL, "no scheduler holds the lock: nothing will be sent at the slot", fix
        )
    if not state["held"]:
        return Finding("scheduler", title, FAIL, f"the lock's holder {state['holder']} is gone", fix)
    host, _, rest = state["holder"].partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return Finding("scheduler", title, FAIL, f"{state['holder']}: no process {pid} on this machine", fix)
    return Finding("scheduler", title, PASS, f"held by {state['holder']} ({state['kind']})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def check_mail_queue(settings: Settings) -> Finding:
    title = "Transactional mail flowing"
    with db.session_scope() as session:
        counts = mailqueue.counts(session)
        oldest = mailqueue.oldest_waiting(session)
    waiting = counts["pending"] + counts["sending"]
    if counts["failed"]:
        return Finding(
            "mail-queue", title, WARN, f"{counts['failed']} failed, {waiting} waiting",
            "See the editor's Mail queue page or `newsletter mail list --status failed`; `newsletter mail retry --failed`.",
        )  # fmt: skip
    if oldest is not None and clock.now() - oldest > STUCK_MAIL:
        return Finding(
            "mail-queue", title, WARN, f"{waiting} waiting, the oldest since {oldest:%Y-%m-%d %H:%M} UTC",
            "Is a sender running (serve, scheduler or worker)? Does the transport answer (see above)?",
        )  # fmt: skip
    return Finding("mail-queue", title, PASS, f"{counts['sent']} sent, {waiting} waiting, none failed")


CHECKS: list[tuple[str, str, Callable[[Settings], Finding]]] = [
    ("database", "Database migrated", check_database),
    ("secret-key", "Secret key strong", check_secret_key),
    ("base-url", "BASE_URL reachable over https", check_base_url),
    ("one-click", "One-click unsubscribe answers", check_one_click),
    ("transport", "Transport reachable", check_transport),
    ("webhooks", "Webhook secrets", check_webhooks),
    ("bounce-mailbox", "Bounce mailbox logs in", check_bounce_mailbox),
    ("scheduler", "Scheduler running", check_scheduler),
    ("mail-queue", "Transactional mail flowing", check_mail_queue),
]
NAMES = ("spf", "dkim", "dmarc", "bounce-domain", *(name for name, _, _ in CHECKS))


def run_checks(settings: Settings, only: tuple[str, ...] = ()) -> list[Finding]:
    """Every check (or those named in ``only``), side by side; in the listed order."""
    jobs: list[tuple[str, Callable[[], Finding]]] = [
        (name, (lambda name=name, title=title, check=check: _finding(name, title, lambda: check(settings))))
        for name, title, check in CHECKS
    ]
    jobs = [
        (name, (lambda run=run, name=name: _finding(name, name.upper(), run)))
        for name, run in dns_findings(settings)
    ] + jobs
    if only:
        jobs = [(name, run) for name, run in jobs if name in only]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        findings = list(pool.map(lambda job: job[1](), jobs))
    position = {name: n for n, name in enumerate(NAMES)}
    return sorted(findings, key=lambda f: position.get(f.check, 99))
