"""What a stranger can do to a reader (issue 12, items 3, 4, 5, 8 and 12):
nothing to their record before they confirm, no text of theirs in mail to an
unconfirmed address, no confirmation without a person, no address or
preferences link behind an unsubscribe link, no formula in an export, no
expired CSRF token accepted, no secret file readable by others."""

from __future__ import annotations

import csv
import io
import os
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import select

from newsletter import clock, config
from newsletter.app import CSRF_TIME_LIMIT
from newsletter.db import session_scope
from newsletter.models import Subscriber, SubscribeRequest
from newsletter.readers import links
from newsletter.readers.csv_io import FORMULA_START, export_csv, import_csv
from newsletter.suppression import suppress
from tests.editor_fixtures import add_subscriber
from tests.readers_fixtures import confirm, csrf_token, link, outbox, post_form, reader, subscribe

pytestmark = pytest.mark.usefixtures("running_sender")  # the mail sender runs, as in `serve`

STRANGER_NAME = "Click https://evil.example now"
STRANGER_CONSENT = "I agree to everything, forever"


def mails_to(address: str):
    return [m for m in outbox() if m.to == address]


def assert_no_stranger_text(mail) -> None:
    seen = " ".join([mail.message["To"], mail.message["Subject"], mail.text, mail.html])
    for text in (STRANGER_NAME, "evil.example", STRANGER_CONSENT, "Mallory"):
        assert text not in seen


def record(email: str) -> tuple:
    sub = reader(email)
    return (
        sub.name,
        sub.topics,
        sub.status,
        sub.consent_source,
        sub.consent_text,
        sub.consent_ip,
        sub.consent_at,
    )


@pytest.fixture
def ip_app(make_app, topics):
    return make_app(store_ip=True)


def stranger(app, ip="203.0.113.66"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


@pytest.mark.parametrize("status", ["pending", "unsubscribed"])
def test_a_stranger_changes_nothing_until_the_owner_confirms(ip_app, status):
    owner = stranger(ip_app, "198.51.100.1")
    subscribe(owner, "ann@example.org", name="Ann", topics=["agents"])
    first = link(mails_to("ann@example.org")[0], "confirm")
    if status == "unsubscribed":
        confirm(owner, first)
        unsub = link(mails_to("ann@example.org")[1], "unsubscribe")
        post_form(owner, unsub, {}, token_from=unsub)
        clock.advance(timedelta(seconds=2))  # links issued from now on are newer than the unsubscribe
    before = record("ann@example.org")
    assert before[2] == status

    mallory = stranger(ip_app)
    subscribe(mallory, "ann@example.org", name=STRANGER_NAME, topics=["tools"])
    api = mallory.post(
        "/api/v1/subscribers",
        json={
            "email": "ann@example.org",
            "name": "Mallory",
            "topics": ["models"],
            "consent_text": STRANGER_CONSENT,
        },
    )
    assert api.status_code == 202
    assert record("ann@example.org") == before  # nothing changed: not the name, topics, status or consent
    stranger_mails = mails_to("ann@example.org")[-2:]
    for mail in stranger_mails:
        assert "Confirm" in mail.message["Subject"]
        assert_no_stranger_text(mail)

    # the page before the button says what confirming that mail would set
    shown = owner.get(link(stranger_mails[0], "confirm")).get_data(as_text=True)
    assert "Tools" in shown and "Click https://evil.example now" in shown  # escaped text, on our page
    assert record("ann@example.org") == before
    if status == "pending":  # the owner confirms with their own mail: their own values
        confirm(owner, first)
        after = reader("ann@example.org")
        assert (after.status, after.name, after.topics, after.consent_ip) == (
            "active",
            "Ann",
            "agents",
            "198.51.100.1",
        )
    else:  # a link issued before they left is stale; the owner uses a fresh one
        assert confirm(owner, first).status_code == 410
        assert record("ann@example.org") == before
        confirm(owner, link(stranger_mails[1], "confirm"))  # they choose to confirm this request
        after = reader("ann@example.org")
        assert (after.status, after.name, after.topics) == ("active", "Mallory", "models")
        assert after.consent_text == STRANGER_CONSENT and after.consent_source == "api"
    with session_scope() as db:
        assert db.exec(select(SubscribeRequest)).all() == []  # the other requests are forgotten


def test_requests_are_capped_with_the_confirmation_mails(ip_app, settings):
    subscribe(stranger(ip_app, "198.51.100.1"), "cap@example.org", topics=["agents"])
    for n in range(6):
        subscribe(
            stranger(ip_app, f"203.0.113.{n}"), "cap@example.org", name=f"Mallory {n}", topics=["tools"]
        )
    with session_scope() as db:
        kept = db.exec(select(SubscribeRequest)).all()
    assert len(mails_to("cap@example.org")) == settings.confirm_max_per_day
    assert len(kept) == settings.confirm_max_per_day - 1  # one mail a request; the first made the record


def test_opening_a_confirmation_link_never_confirms(client, topics):
    subscribe(client, "bea@example.org", topics=["agents"])
    path = link(outbox()[0], "confirm")
    scanner = client.application.test_client()
    for _ in range(3):
        assert scanner.get(path).status_code == 200
        assert scanner.head(path).status_code == 200
    assert scanner.post(path, data={}).status_code == 400  # a POST without the page's CSRF token
    assert reader("bea@example.org").status == "pending" and len(outbox()) == 1
    assert confirm(client, path).status_code == 200
    assert reader("bea@example.org").status == "active"


@pytest.mark.parametrize("status", ["active", "pending", "unsubscribed", "bounced", "complained"])
def test_unsubscribe_pages_show_no_address_and_no_preferences_link(client, settings, topics, status):
    sid = add_subscriber("cy.reader@example.org", status=status)
    if status in ("bounced", "complained"):
        with session_scope() as db:
            suppress(db, "cy.reader@example.org", "complaint" if status == "complained" else "hard_bounce")
    path = links.unsubscribe_url(settings, sid).removeprefix(settings.base_url)
    preferences = links.preferences_token(settings, sid)
    pages = [
        client.get(path),
        post_form(client, path, {}, token_from="/subscribe/check-your-inbox"),
        client.application.test_client(use_cookies=False).post(path, data={"List-Unsubscribe": "One-Click"}),
    ]
    for page in pages:
        body = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "cy.reader" not in body and "/preferences/" not in body and preferences not in body

    asked = post_form(client, path + "/preferences-link", {}, token_from="/subscribe/check-your-inbox")
    assert asked.status_code == 200 and "Check your inbox" in asked.get_data(as_text=True)
    sent = [m for m in outbox() if m.to == "cy.reader@example.org"]
    if status in ("bounced", "complained"):
        assert sent == []  # a suppressed address is never mailed, and the page says the same
    else:
        [mail] = sent
        assert link(mail, "preferences") == f"/preferences/{preferences}"


def test_the_preferences_link_mail_is_capped(client, settings, topics):
    sid = add_subscriber("dee@example.org")
    path = links.unsubscribe_url(settings, sid).removeprefix(settings.base_url)
    for _ in range(settings.confirm_max_per_day + 2):
        assert post_form(client, path + "/preferences-link", {}, token_from=path).status_code == 200
    assert len(outbox()) == settings.confirm_max_per_day
    assert client.post(path + "/preferences-link", data={}).status_code == 400  # no CSRF token


# --- CSV export ------------------------------------------------------------------------------

HOSTILE_CELLS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1",
                 " =1", "  +cmd|' /C calc'!A0", "＝1+1", "＋1", "\n=1"]  # fmt: skip
HOSTILE_ADDRESSES = ["=cmd@example.org", "+one@example.org", "-two@example.org", "=1+1@example.org"]


def _cells_are_inert(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    for row in rows[1:]:
        for cell in row:
            assert not cell.lstrip(" ").startswith(FORMULA_START), repr(cell)
    return rows


def test_every_exported_cell_is_formula_safe_and_reimports_as_it_was(settings, admin, topics):
    for n, (address, name) in enumerate(zip(HOSTILE_ADDRESSES * 3, HOSTILE_CELLS, strict=False)):
        add_subscriber(address if n < len(HOSTILE_ADDRESSES) else f"r{n}@example.org", name=name)
    with session_scope() as db:  # whatever the column holds, topics included
        db.add(Subscriber(email="t@example.org", email_hash="t", topics="=2+2,-x", consent_source="@x"))
    exported = admin.get("/editor/subscribers/export.csv").get_data(as_text=True)
    rows = _cells_are_inert(exported)
    by_email = {row[0]: row for row in rows[1:]}
    assert "'=cmd@example.org" in by_email and by_email["t@example.org"][3] == "'=2+2;-x"
    cli = admin.client.application.test_cli_runner().invoke(args=["subscribers", "export"])
    _cells_are_inert(cli.output)

    with session_scope() as db:  # re-import the export into an emptied list: the same readers
        before = {s.email: s.name for s in db.exec(select(Subscriber)).all() if s.email != "t@example.org"}
        for sub in db.exec(select(Subscriber)).all():
            db.delete(sub)
    report = import_csv(settings, io.BytesIO(exported.encode("utf-8")))
    with session_scope() as db:
        after = {s.email: s.name for s in db.exec(select(Subscriber)).all()}
    assert report.imported == len(before)  # the row with made-up topics is refused, not imported
    assert [reason for _, reason in report.rejected] == ["topics: Unknown topic: -x, =2+2"]
    assert {k: v for k, v in after.items() if k != "t@example.org"} == {
        email: " ".join(name.split()) for email, name in before.items()
    }

    out = io.StringIO()
    with session_scope() as db:
        export_csv(db, out)
    _cells_are_inert(out.getvalue())


# --- CSRF tokens expire ---------------------------------------------------------------------


class _Old(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - CSRF_TIME_LIMIT - 60


def test_csrf_tokens_expire_in_every_environment(make_app, topics):
    """The session forms' tokens (Flask-WTF); the subscribe form's cookie-less
    token expires too (tests/test_public_cache.py)."""
    for env in ("development", "production"):
        base_url = "https://news.example.org" if env == "production" else "http://localhost"
        assert make_app(env=env, base_url=base_url).config["WTF_CSRF_TIME_LIMIT"] == CSRF_TIME_LIMIT
    app = make_app()
    client = app.test_client()
    fresh = csrf_token(client, "/subscribe/check-your-inbox")
    raw = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").loads(fresh)
    old = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=_Old).dumps(raw)
    answer = client.post("/confirm/new", data={"email": "eve@example.org", "csrf_token": old})
    assert answer.status_code == 400 and "Form expired" in answer.get_data(as_text=True)
    again = client.post("/confirm/new", data={"email": "eve@example.org", "csrf_token": fresh})
    assert again.status_code in (200, 302)


# --- the instance secret --------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_secret_file_is_never_readable_by_others(tmp_path):
    seen_open: list[str] = []
    stop = threading.Event()

    def watch(folder: Path):
        while not stop.is_set():
            for entry in os.scandir(folder) if folder.exists() else ():
                try:
                    if entry.stat().st_mode & 0o077 and entry.is_file():
                        seen_open.append(entry.name)
                except FileNotFoundError:
                    pass

    old_umask = os.umask(0)  # the widest umask: nothing may depend on it
    try:
        for n in range(20):
            folder = tmp_path / f"instance{n}"
            folder.mkdir(mode=0o700)
            watcher = threading.Thread(target=watch, args=(folder,))
            watcher.start()
            secrets_read = []
            threads = [
                threading.Thread(
                    target=lambda f=folder, out=secrets_read: out.append(config._instance_secret(f))
                )
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.set()
            watcher.join()
            stop.clear()
            assert len(set(secrets_read)) == 1 and len(secrets_read[0]) >= 32
            assert _mode(folder / "secret_key") == 0o600
            assert [p.name for p in folder.iterdir()] == ["secret_key"]  # no temporary file left
        fresh = tmp_path / "fresh" / "instance"
        config._instance_secret(fresh)
        assert _mode(fresh) == 0o700 and _mode(fresh / "secret_key") == 0o600
    finally:
        os.umask(old_umask)
    assert seen_open == []


def test_an_existing_secret_readable_by_others_is_narrowed(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("an existing secret that is long enough to use")
    path.chmod(0o644)
    assert config._instance_secret(tmp_path) == "an existing secret that is long enough to use"
    assert _mode(path) == 0o600
