"""Where the time to the first message goes: `newsletter issue send`, with a
timestamp at each step, from the interpreter's start to each sending
process's first SMTP transaction.

Run by ``bench/send_cli.py`` in place of the command's own entry point:

    BENCH_WRAP=".venv/bin/python bench/send_timeline.py" \\
        .venv/bin/python bench/send_cli.py --readers 20000 --processes default --no-reference

It appends one line per step to ``$BENCH_TIMELINE`` (default
``/tmp/send-timeline.log``): milliseconds since this script started, the
process id and the step. The steps are the real functions of the send,
wrapped here with a timer (nothing else changes): the imports, settings,
engine, ``counts_for``, ``start_send`` with its freeze and fan-out,
``release_memory``, ``Renders.prepared``, each process's first claim and
batch, the progress bar's start, each SMTP connection and each process's
first transaction. ``BENCH_WRAP`` passes the command line; this
script keeps what follows ``send``.
"""

from __future__ import annotations

import os
import sys
import time

STARTED = time.perf_counter()
LOG = open(os.environ.get("BENCH_TIMELINE", "/tmp/send-timeline.log"), "a")  # noqa: SIM115 - open until exit


def mark(step: str) -> None:
    LOG.write(f"{(time.perf_counter() - STARTED) * 1000:7.1f} ms  pid {os.getpid():>7}  {step}\n")
    LOG.flush()


def timed(owner, name: str, first_only: bool = False) -> None:
    """Replace ``owner.name`` with a copy that marks its start and end
    (``first_only``: only its first call in each process)."""
    original = getattr(owner, name)
    seen: set[int] = set()

    def wrapper(*args, **kwargs):
        if first_only:
            if os.getpid() in seen:
                return original(*args, **kwargs)
            seen.add(os.getpid())
        mark(f"{name} >")
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"{name} <")

    setattr(owner, name, wrapper)


def main() -> None:
    sys.path.insert(0, str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    mark("interpreter ready")
    from newsletter.__main__ import collector_paused

    with collector_paused():  # as the command's entry point imports it
        from newsletter.delivery import send_cli

    mark("newsletter.delivery.send_cli imported")
    from newsletter import config, db
    from newsletter.delivery import batch, deliver, dispatch, queue, send
    from newsletter.delivery.transports import smtp

    timed(config, "load_settings")
    send_cli.load_settings = config.load_settings
    timed(db, "init_engine")
    timed(send, "counts_for")
    timed(send, "start_send")
    deliver.start_send = send.start_send
    for name in ("freeze_issue", "fan_out", "release_memory"):
        timed(send, name)
    timed(deliver, "reclaim_expired_leases")
    timed(batch.Renders, "prepared")
    timed(smtp.SmtpTransport, "_connect")
    timed(queue, "claim_batch", first_only=True)
    timed(dispatch, "process_batch", first_only=True)
    timed(send_cli._Bar, "__init__")
    first: set[int] = set()
    pipelined = smtp.SmtpTransport._pipelined

    def first_transaction(self, *args, **kwargs):
        # a generator that yields once its message is on the wire (a lane's turn)
        result = yield from pipelined(self, *args, **kwargs)
        if os.getpid() not in first:
            first.add(os.getpid())
            mark("first message on the wire (its reply read)")
        return result

    smtp.SmtpTransport._pipelined = first_transaction
    arguments = sys.argv[sys.argv.index("send") + 1 :]
    send_cli.standalone(args=arguments, prog_name="newsletter issue send")


if __name__ == "__main__":
    main()
