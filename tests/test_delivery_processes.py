"""NEWSLETTER_SEND_PROCESSES: the in-process sender split over processes
(real child processes, a real SMTP server, the configured database)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.config import ConfigError, load_settings
from newsletter.db import init_engine, session_scope
from newsletter.delivery import dispatch, processes, send
from newsletter.delivery.deliver import deliver, sending_processes
from newsletter.models import OutboxMessage
from tests.delivery_fixtures import (
    add_subscribers,
    command_env,
    deliveries,
    issue_row,
    make_issue,
    run_python,
)


def test_concurrency_and_rate_are_split_not_multiplied(make_settings):
    assert processes.shares(4, 2) == [2, 2]
    assert processes.shares(5, 2) == [3, 2]
    assert processes.shares(1, 3) == [1], "never more processes than connections"
    children = processes.child_settings(make_settings(send_concurrency=5, send_processes=2, send_rate=100))
    assert [c.send_concurrency for c in children] == [3, 2]
    assert sum(c.send_rate for c in children) == pytest.approx(100)
    assert {c.send_processes for c in children} == {1}, "a child never spawns processes itself"
    assert [c.send_rate for c in processes.child_settings(make_settings(send_processes=2))] == [0.0, 0.0]


def test_send_processes_must_not_be_negative():
    with pytest.raises(ConfigError, match="NEWSLETTER_SEND_PROCESSES"):
        load_settings(environ={"NEWSLETTER_SEND_PROCESSES": "-1"}, dotenv=False)


def test_unset_send_processes_fork_one_per_core_only_where_the_caller_has_no_other_thread():
    """The default (0): `issue send` (no other thread) forks one sender per
    core; a threaded process (serve, the scheduler) sends from itself.
    A number, or `auto`, is used as it is everywhere."""
    unset = load_settings(environ={}, dotenv=False)
    assert unset.send_processes == 0
    quiet, busy = [], []  # (the unset default in a command with no thread: the fork test below)
    probe = threading.Thread(target=lambda: quiet.append(sending_processes(unset)))
    probe.start()  # the probe itself is the other thread: a threaded caller
    probe.join()
    assert quiet == [1]
    assert sending_processes(load_settings(environ={"NEWSLETTER_SEND_PROCESSES": "3"}, dotenv=False)) == 3
    auto = load_settings(environ={"NEWSLETTER_SEND_PROCESSES": "auto"}, dotenv=False)
    probe = threading.Thread(target=lambda: busy.append(sending_processes(auto)))
    probe.start()
    probe.join()
    assert busy[-1] == (os.cpu_count() or 1)


@pytest.mark.slow
def test_two_processes_send_every_reader_exactly_once(make_settings, smtp_server):
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=3, send_processes=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 120)
    add_subscribers(settings, 5, prefix="left", status="unsubscribed")
    batches = []

    counts = deliver(settings, 1, here=True, progress=lambda start, batch: batches.append(batch.sent))

    assert (counts.status, counts.sent, counts.failed, counts.skipped) == ("sent", 120, 0, 0)
    received = smtp_server.wait_for(120)
    per_reader = Counter(m.to for m in received)
    assert set(per_reader) == {f"reader{i}@example.org" for i in range(120)}
    assert set(per_reader.values()) == {1}, "exactly one message per reader"
    # the progress callback hears about every batch sent by the children
    assert sum(batches) == 120
    rows = deliveries(settings, issue_row(settings, 1).id)
    assert {r.status for r in rows} == {"sent"} and all(r.message_id for r in rows)
    owners = {r.lease_owner for r in rows}
    assert owners == {None}, "every lease is released"


@pytest.mark.slow
def test_forked_children_share_the_queue(make_settings, monkeypatch):
    """The fork path (a single-threaded parent such as `issue send`): children
    drop the inherited database pool and open their own."""
    settings = make_settings(transport="outbox://", send_concurrency=2, send_processes=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 60)
    monkeypatch.setattr(processes, "_context", lambda _settings: multiprocessing.get_context("fork"))

    counts = deliver(settings, 1, here=True)

    assert (counts.status, counts.sent) == ("sent", 60)
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 60


@pytest.mark.slow
def test_a_forking_callers_senders_start_before_its_progress_display(make_settings, monkeypatch):
    """`issue send` forks its children, then starts its own senders, then its
    progress bar (``on_started``, which imports rich): the bar's imports do
    not hold up this process's share. Before, the bar came first."""
    settings = make_settings(transport="outbox://", send_concurrency=2, send_processes=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 60)
    issue = send.start_send(settings, 1)
    monkeypatch.setattr(processes, "_context", lambda _settings: multiprocessing.get_context("fork"))
    senders_at_start = []

    def on_started():
        senders_at_start.append(sorted(t.name for t in threading.enumerate() if t.name.startswith("sender")))

    stats = processes.run_processes(settings, issue.id, stop=threading.Event(), on_started=on_started)

    assert senders_at_start and "sender-0" in senders_at_start[0], "this process's senders already ran"
    assert stats.sent == 60


@pytest.mark.slow
@pytest.mark.parametrize("processes_count", [1, 2])
def test_a_progress_display_that_fails_stops_the_senders(make_settings, monkeypatch, processes_count):
    """``on_started`` runs while the senders already send (the progress bar
    loading, Ctrl-C meanwhile): when it raises, the senders stop after their
    batch instead of sending the rest of the issue before the error is seen."""
    settings = make_settings(
        transport="outbox://", send_concurrency=2, send_processes=processes_count, send_rate=40
    )
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 400)
    issue = send.start_send(settings, 1)
    monkeypatch.setattr(processes, "_context", lambda _settings: multiprocessing.get_context("fork"))

    def display_fails():
        raise RuntimeError("the display failed")

    with pytest.raises(RuntimeError, match="display failed"):
        if processes_count == 1:
            dispatch.run_pool(settings, issue.id, on_started=display_fails)
        else:
            processes.run_processes(settings, issue.id, stop=threading.Event(), on_started=display_fails)

    assert not [t for t in threading.enumerate() if t.name.startswith("sender")], "no sender left running"
    rows = deliveries(settings, issue.id)
    assert Counter(r.status for r in rows)["pending"] > 200, "stopped after the first batches (40 a second)"


@pytest.mark.slow
def test_a_stop_request_reaches_the_children(make_settings, smtp_server):
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=2, send_processes=2, send_rate=40)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 400)
    issue = send.start_send(settings, 1)
    stop = threading.Event()

    # 40 a second split over two children: stop as soon as the first batch is reported
    stats = dispatch.run_pool(settings, issue.id, stop=stop, on_batch=lambda batch: stop.set())

    assert 0 < stats.sent < 400, "stopped part-way"
    rows = deliveries(settings, issue.id)
    assert Counter(r.status for r in rows) == {"sent": stats.sent, "pending": 400 - stats.sent}


def test_send_processes_auto_is_one_per_core():
    import os

    from newsletter.config import load_settings

    settings = load_settings(environ={"NEWSLETTER_SEND_PROCESSES": "auto"}, dotenv=False)
    assert settings.send_processes == (os.cpu_count() or 1)
    with pytest.raises(ConfigError, match="NEWSLETTER_SEND_PROCESSES"):
        load_settings(environ={"NEWSLETTER_SEND_PROCESSES": "many"}, dotenv=False)


# Run as a fresh process (no test's thread around, as for a user): wrap the sending
# child's entry and the two ways a child could read or prepare the issue again, then
# run `newsletter issue send` itself. The counters live in shared memory that only a
# forked child inherits: a forkserver child would run the unwrapped ``_child``.
_FORK_PROBE = """
import multiprocessing, os, sys
from newsletter.delivery import batch, dispatch, processes
from newsletter.rendering import personalise

command = os.getpid()
forked = multiprocessing.Value("i", 0)
work_in_children = multiprocessing.Value("i", 0)
loops_in_command = multiprocessing.Value("i", 0)

def count(value):
    with value.get_lock():
        value.value += 1

real_child, real_load, real_dispatch = processes._child, batch.Renders._load, dispatch.dispatch

def child(*args):
    count(forked)
    real_child(*args)

def loop(*args, **kwargs):
    if os.getpid() == command:
        count(loops_in_command)
    return real_dispatch(*args, **kwargs)

def load(self, issue_id):
    if os.getpid() != command:
        count(work_in_children)
    return real_load(self, issue_id)

class Split(personalise._Split):
    __slots__ = ()

    def __init__(self, nonce, source):
        if os.getpid() != command:
            count(work_in_children)
        super().__init__(nonce, source)

processes._child, batch.Renders._load, personalise._Split = child, load, Split
dispatch.dispatch = loop
sys.argv = ["newsletter", "issue", "send", "1", "--yes"]
from newsletter.__main__ import main
try:
    main()
finally:
    print(
        f"forked={forked.value} work_in_children={work_in_children.value} "
        f"loops_in_command={loops_in_command.value}",
        file=sys.stderr,
    )
"""


@pytest.mark.slow
@pytest.mark.parametrize("processes_setting", ["3", None])
def test_issue_send_forks_its_senders_and_they_never_prepare_the_issue_again(
    make_settings, tmp_path, processes_setting
):
    """`issue send` with its progress bar (rich runs a refresh thread) and
    three processes (or the default, one per core): the command sends one
    share itself and forks the others, which inherit the renders the command
    read and split once — no child reads them from the database or splits
    them again. Not a timing test: it counts."""
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 80)
    env = command_env(
        settings,
        NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTER_SEND_CONCURRENCY="3",
        FORCE_COLOR="1",  # rich draws a live bar (and runs its refresh thread) as on a terminal
    )
    if processes_setting:
        env["NEWSLETTER_SEND_PROCESSES"] = processes_setting
    own_threads, *children = processes.shares(3, int(processes_setting or os.cpu_count() or 1))
    result = run_python("-c", _FORK_PROBE, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "80 sent, 0 failed" in result.stdout
    assert f"forked={len(children)} " in result.stderr, "every sending child was forked from the command"
    assert f"loops_in_command={own_threads}" in result.stderr, "the command sent its own share"
    assert "work_in_children=0" in result.stderr, "no child read or split the issue's renders"
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 80


# The same kind of probe for DKIM: count, in the children only, the loads of a
# signer's key and the messages they sign.
_DKIM_PROBE = """
import multiprocessing, os, sys
from newsletter.delivery import dkim

command = os.getpid()
loaded_in_children = multiprocessing.Value("i", 0)
signed_in_children = multiprocessing.Value("i", 0)
real_init, real_sign = dkim.DkimSigner.__init__, dkim.DkimSigner.sign_messages

def init(self, *args):
    if os.getpid() != command:
        with loaded_in_children.get_lock():
            loaded_in_children.value += 1
    real_init(self, *args)

def sign(self, messages):
    if os.getpid() != command:
        with signed_in_children.get_lock():
            signed_in_children.value += len(messages)
    real_sign(self, messages)

dkim.DkimSigner.__init__, dkim.DkimSigner.sign_messages = init, sign
sys.argv = ["newsletter", "issue", "send", "1", "--yes"]
from newsletter.__main__ import main
try:
    main()
finally:
    print(
        f"loaded_in_children={loaded_in_children.value} signed_in_children={signed_in_children.value}",
        file=sys.stderr,
    )
"""


@pytest.mark.slow
def test_issue_send_loads_the_dkim_key_once_and_its_children_sign_with_it(
    smtp_server, make_settings, tmp_path
):
    """With DKIM, the command loads the key (and DKIM's code) before it forks:
    its children sign with the key they inherit instead of loading it again,
    and every message that arrives verifies."""
    import dkim

    from newsletter.delivery.dkim import generate_key

    record = generate_key(tmp_path / "dkim.pem").encode()
    settings = make_settings(transport=smtp_server.dsn)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 200)  # several batches: the child's first claim never finds the queue empty
    env = command_env(
        settings,
        NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTER_SEND_PROCESSES="2",
        NEWSLETTER_SEND_CONCURRENCY="2",
        NEWSLETTER_DKIM_DOMAIN="example.org",
        NEWSLETTER_DKIM_SELECTOR="gts",
        NEWSLETTER_DKIM_KEY_FILE=str(tmp_path / "dkim.pem"),
    )
    result = run_python("-c", _DKIM_PROBE, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "200 sent, 0 failed" in result.stdout
    assert "loaded_in_children=0 " in result.stderr, "a child loaded the key again"
    signed = int(result.stderr.rsplit("signed_in_children=", 1)[1].split()[0])
    assert signed > 0, "the child signed with the key it inherited"
    received = smtp_server.wait_for(200)
    assert all(dkim.verify(m.data, dnsfunc=lambda *args, **kwargs: record) for m in received)


@pytest.mark.slow
def test_a_sending_process_stops_when_its_parent_dies(make_settings, tmp_path):
    """A killed `issue send` leaves no sender behind: the child is told
    (PR_SET_PDEATHSIG, or the watchdog) and stops after its batch."""
    # two messages a second to 100 readers: the child is still sending when its parent dies
    settings = make_settings(transport="outbox://", send_concurrency=1, send_processes=1, send_rate=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 100)
    issue = send.start_send(settings, 1)
    pid_file = tmp_path / "child.pid"
    context = multiprocessing.get_context("fork")

    def parent():
        reports = context.Queue()
        child = context.Process(
            target=processes._child,
            args=(settings, issue.id, True, context.Event(), reports, None, os.getpid()),
        )
        child.start()
        pid_file.write_text(str(child.pid))
        threading.Event().wait()  # until killed

    middle = context.Process(target=parent)
    middle.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the sending process did not start"
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    assert _alive(child_pid)
    os.kill(middle.pid, signal.SIGKILL)
    middle.join()

    deadline = time.monotonic() + 10
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the sending process outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie, or a process reparented and reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# A fresh process that starts the in-process sender as serve and the scheduler
# do, with nothing to send yet; it prints the preload of each forkserver among
# its children, then starts the send and waits for the runner to deliver it.
_RUNNER_PROBE = """
import os, sys, time
from pathlib import Path
from newsletter.config import load_settings
from sqlalchemy import select
from newsletter.db import init_engine, session_scope
from newsletter.delivery import runner, send
from newsletter.models import Issue

settings = load_settings()
init_engine(settings.database_url)
sender = runner.Runner(settings, poll=0.2).start()

def forkservers():
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            line = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\\0", b" ").decode()
            if "multiprocessing.forkserver import main" in line:
                found.append(line)
    return found

time.sleep(0.5)
print("forkservers before the send:", forkservers(), flush=True)
send.start_send(settings, 1)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    with session_scope() as session:
        if session.execute(select(Issue.status).where(Issue.number == 1)).scalar() == "sent":
            break
    time.sleep(0.2)
sender.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("processes_setting", "with_dkim"), [("2", False), ("2", True), (None, False)])
def test_serve_and_the_scheduler_start_their_forkserver_with_their_sender(
    make_settings, tmp_path, processes_setting, with_dkim
):
    """serve's and the scheduler's sender thread (``runner.Runner``) with
    NEWSLETTER_SEND_PROCESSES above 1 start the forkserver, preloading the
    sender, when they start — not at their first send, whose children would
    wait for it to import the engine; with a DKIM key set, DKIM's code too.
    Unset, they send from their own process and start none. Either way the
    send is delivered whole."""
    settings = make_settings(transport="outbox://")
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 30)
    env = command_env(settings, NEWSLETTER_SEND_CONCURRENCY="2")
    if processes_setting:
        env["NEWSLETTER_SEND_PROCESSES"] = processes_setting
    if with_dkim:
        from newsletter.delivery.dkim import generate_key

        generate_key(tmp_path / "dkim.pem")
        env.update(
            NEWSLETTER_DKIM_DOMAIN="example.org",
            NEWSLETTER_DKIM_SELECTOR="gts",
            NEWSLETTER_DKIM_KEY_FILE=str(tmp_path / "dkim.pem"),
        )

    result = run_python("-c", _RUNNER_PROBE, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    before = result.stdout.split("forkservers before the send:", 1)[1].splitlines()[0]
    if processes_setting:
        assert "newsletter.delivery.processes" in before, "the forkserver runs, preloading the sender"
        assert ("newsletter.delivery.dkim" in before) == with_dkim, "DKIM's code preloaded when a key is set"
    else:
        assert before.strip() == "[]", "one process: no forkserver"
    assert issue_row(settings, 1).status == "sent"
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 30


@pytest.mark.slow
def test_a_threaded_callers_own_share_does_not_wait_for_its_children(make_settings, smtp_server, monkeypatch):
    """In serve or the scheduler (threads: children from the forkserver),
    this process's share starts sending before the children are started, so
    a forkserver still importing the sender (a send just after start-up)
    holds up only the children. Here the child's start waits until this
    process has reported a batch; before, the share started after it."""
    settings = make_settings(transport=smtp_server.dsn, send_concurrency=2, send_processes=2)
    init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 60)
    issue = send.start_send(settings, 1)
    assert not dispatch.can_fork(), "the SMTP server's thread makes this a threaded caller"
    first_batch = threading.Event()
    waited = []
    forkserver_process = type(processes._forkserver(settings).Process())
    real_start = forkserver_process.start

    def start_when_a_batch_is_out(self):
        waited.append(first_batch.wait(30))
        real_start(self)

    monkeypatch.setattr(forkserver_process, "start", start_when_a_batch_is_out)

    stats = processes.run_processes(
        settings, issue.id, stop=threading.Event(), on_batch=lambda batch: first_batch.set()
    )

    assert waited == [True], "this process sent a batch before its child was started"
    assert stats.sent == 60
    assert Counter(m.to for m in smtp_server.wait_for(60)) == {f"reader{i}@example.org": 1 for i in range(60)}


def test_a_send_gives_back_its_connections_memory_without_closing_sqlite(make_settings):
    """Before the senders start (and fork), ``start_send`` gives back what its
    connections hold. SQLite's stay open with their page cache shrunk: the
    last close would checkpoint and delete the write-ahead log, tens of
    milliseconds before the first message. PostgreSQL's are closed (cheap),
    so no socket is inherited by a forked sender."""
    settings = make_settings(transport="outbox://")
    engine = init_engine(settings.database_url)
    make_issue(settings, 1)
    add_subscribers(settings, 200)

    send.start_send(settings, 1)

    if engine.dialect.name == "sqlite":
        assert engine.pool.checkedin() >= 1, "the pooled connection is still open"
        log = Path(f"{engine.url.database}-wal")
        assert log.exists() and log.stat().st_size > 0, "the fan-out's log was not checkpointed and deleted"
    else:
        assert engine.pool.checkedin() == 0, "PostgreSQL's connections are closed"
    counts = deliver(settings, 1, here=True)
    assert (counts.status, counts.sent) == ("sent", 200)
