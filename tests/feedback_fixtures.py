"""Rows the feedback tests need: a subscriber, an issue, a sent delivery;
a subscriber's status read back; and a private Dovecot (the bounce mailbox's
real IMAP peer, also used by `doctor`'s tests)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter import clock, db
from newsletter.models import Delivery, Issue, Subscriber
from newsletter.suppression import email_hash
from tests.helpers import free_port, require


def make_subscriber(email: str, status: str = "active", **fields) -> int:
    with db.session_scope() as s:
        row = Subscriber(email=email, email_hash=email_hash(email), status=status, **fields)
        s.add(row)
        s.flush()
        return row.id


def make_issue(number: int = 1, status: str = "sent") -> int:
    now = clock.now()
    with db.session_scope() as s:
        row = Issue(
            number=number,
            title=f"Issue {number:03d}",
            subject=f"Issue {number:03d}",
            status=status,
            window_start=now - timedelta(days=7),
            window_end=now,
        )
        s.add(row)
        s.flush()
        return row.id


def make_delivery(
    issue_id: int, subscriber_id: int, *, provider_message_id: str | None = None, status: str = "sent"
) -> int:
    with db.session_scope() as s:
        sub = s.get(Subscriber, subscriber_id)
        row = Delivery(
            issue_id=issue_id,
            subscriber_id=subscriber_id,
            email=sub.email,
            status=status,
            provider_message_id=provider_message_id,
            sent_at=clock.now() if status == "sent" else None,
        )
        s.add(row)
        s.flush()
        return row.id


def status_of(email: str) -> str:
    with db.session_scope() as s:
        return s.exec(select(Subscriber.status).where(Subscriber.email == email)).one()


@pytest.fixture
def engine(database_url):
    """The process engine on this test's database; a feedback test module asks
    for it for all its tests with ``pytestmark = pytest.mark.usefixtures("engine")``."""
    db.init_engine(database_url)
    yield


DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-pw"


@pytest.fixture
def dovecot():
    """A private Dovecot: own config, passwd-file user, maildir, loopback port."""
    require(Path(DOVECOT).exists(), "dovecot not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="signal-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    (root / "mail").mkdir()
    if os.geteuid() == 0:  # as root (this container): mail as nobody, login as dovenull
        uid, gid = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid
        os.chown(root / "mail", uid, gid)
        internal, login = "dovecot", "dovenull"
    else:  # as an ordinary user (CI runners): everything runs as that user
        uid, gid = os.getuid(), os.getgid()
        internal = login = pwd.getpwuid(uid).pw_name
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{root}/mail/{USER}::\n")
    config = root / "dovecot.conf"
    config.write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = signal-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    else:
        proc.kill()
    if proc.poll() is not None:
        log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
        out = proc.stdout.read().decode() if proc.stdout else ""
        pytest.fail(f"dovecot did not start: {out}\n{log}")
    yield f"imap://{USER}:{PASSWORD}@127.0.0.1:{port}/INBOX"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)
