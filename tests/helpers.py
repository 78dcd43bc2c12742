"""Helpers shared by the tests: the peers and fakes that stand in for the
outside world (a real SMTP server, an ESP's HTTP API, bounce and complaint
mail as receivers write it), free ports, threads released together, and
link extraction."""

from __future__ import annotations

import base64
import email
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import default as default_policy
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from newsletter import clock

REQUIRE_ALL = os.environ.get("NEWSLETTER_REQUIRE_ALL", "") not in ("", "0", "false")


def require(condition: bool, reason: str) -> None:
    """Skip when a real peer (browser, server) is missing; fail in CI."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def axe_findings(frame) -> list[str]:
    """Serious and critical axe-core findings in a Playwright page's frame (axe-core from
    npm, tests/axe; injected through DevTools, so the page's own CSP does not block it,
    and run without its style preload, which a strict CSP would report)."""
    require(AXE.exists(), "axe-core not installed (npm ci --prefix tests/axe)")
    if not frame.evaluate("() => typeof window.axe !== 'undefined'"):
        frame.evaluate(AXE.read_text())
    result = frame.evaluate("async () => JSON.stringify(await axe.run(document, { preload: false }))")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']]}"
        for v in json.loads(result)["violations"]
        if v["impact"] in ("serious", "critical")
    ]


MAILPARSER = Path(__file__).parent / "mailparser"


def mailparser(raws: list[bytes]) -> list[dict]:
    """What Nodemailer's ``mailparser`` (a MIME parser written apart from
    Python's ``email``) reads in each raw message: decoded subject, ``from``
    and ``to`` addresses, ``list`` (its parse of the List-* headers),
    ``messageId``, ``text``, ``html`` and the raw ``headerLines``. Needs
    node and ``npm ci --prefix tests/mailparser`` (CI runs it)."""
    node = shutil.which("node")
    require(
        node is not None and (MAILPARSER / "node_modules" / "mailparser").is_dir(),
        "node and mailparser (npm ci --prefix tests/mailparser)",
    )
    payload = json.dumps([base64.b64encode(raw).decode("ascii") for raw in raws]).encode()
    done = subprocess.run(
        [node, str(MAILPARSER / "parse.mjs")], input=payload, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return json.loads(done.stdout)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at the moment (for peers that must be told one)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


Peer = TypeVar("Peer")


def start_peers(make: Callable[..., Peer]) -> Iterator[Callable[..., Peer]]:
    """The body of a factory fixture: ``yield from start_peers(make)`` hands the
    test a function that starts a peer (``make(*args, **kwargs)``) as often as
    it likes, and stops every peer it started when the test ends."""
    started: list = []

    def start(*args, **kwargs) -> Peer:
        peer = make(*args, **kwargs)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_at: datetime | None = None  # newsletter.clock.now() when the server accepted it
    session: str = ""  # the client's address and port: which SMTP session carried it

    @property
    def message(self) -> Message:
        # SMTPUTF8 messages carry raw UTF-8 headers (RFC 6532).
        return email.message_from_string(self.data.decode("utf-8", "surrogateescape"), policy=default_policy)

    @property
    def to(self) -> str:
        return self.rcpt_tos[0]

    def part(self, subtype: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == f"text/{subtype}":
                return part.get_content()
        raise AssertionError(f"no text/{subtype} part")

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")

    def links(self, pattern: str = r"https?://[^\s\"'<>)]+") -> list[str]:
        return re.findall(pattern, self.text)


@dataclass
class SmtpSink:
    """aiosmtpd on a free loopback port. ``respond(rcpt)`` may return an SMTP
    reply such as "451 4.7.1 try later" to refuse a recipient; None accepts.
    It announces PIPELINING (aiosmtpd handles pipelined commands but does not
    say so), as Postfix and the big receivers do, so sends take the
    pipelined path production takes; ``pipelining=False`` for the other."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    respond: Callable[[str], str | None] | None = None
    auth: tuple[str, str] | None = None
    pipelining: bool = True

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                session.host_name = hostname
                if sink.pipelining:
                    responses.insert(1, "250-PIPELINING")
                return responses

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                reply = sink.respond(address) if sink.respond else None
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                with sink._lock:
                    sink.messages.append(
                        Received(
                            envelope.mail_from,
                            list(envelope.rcpt_tos),
                            envelope.content,
                            clock.now(),
                            f"{session.peer[0]}:{session.peer[1]}",
                        )
                    )
                return "250 Message accepted for delivery"

        if not self.port:
            self.port = free_port(self.host)
        kwargs = {}
        if self.auth:
            user, password = self.auth

            def authenticator(server, session, envelope, mechanism, auth_data):
                from aiosmtpd.smtp import AuthResult

                ok = auth_data.login.decode() == user and auth_data.password.decode() == password
                # handled=False: aiosmtpd answers a failure with 535 itself (with its
                # default, handled=True, it answers nothing and the client times out)
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": authenticator, "auth_require_tls": False}
        self._lock = threading.Lock()
        self._controller = Controller(
            Handler(), hostname=self.host, port=self.port, enable_SMTPUTF8=True, **kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def dsn(self) -> str:
        if self.auth:
            return f"smtp://{self.auth[0]}:{self.auth[1]}@{self.host}:{self.port}"
        return f"smtp://{self.host}:{self.port}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def clear(self) -> None:
        self.messages.clear()

    def last_per_session(self) -> set[str]:
        """The recipient of the last message each SMTP session has delivered:
        all that a sender killed now may not have heard the server accept
        (RFC 1047's window: one message a session)."""
        last: dict[str, str] = {}
        for received in list(self.messages):
            last[received.session] = received.to
        return set(last.values())


def race(*calls: Callable[[], object]) -> list[BaseException | None]:
    """Run ``calls`` in threads released together (a barrier), wait for all of
    them, and return the outcome of each, in order: None, or its exception."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def run_concurrently(target: Callable[[], object], count: int = 4) -> list[Exception]:
    """Start ``count`` threads that call ``target`` at the same moment (a
    barrier), wait for all of them, and return the exceptions they raised."""
    return [outcome for outcome in race(*[target] * count) if outcome is not None]


# --- bounce and complaint mail, as receivers write it ------------------------------------


def original_headers(rcpt: str, return_path: str) -> str:
    return (
        f"Return-Path: <{return_path}>\r\n"
        f"From: GET THE SIGNAL <signal@signal.example.org>\r\n"
        f"To: {rcpt}\r\n"
        f"Subject: Issue 045: AI Ethics and Data 2026\r\n"
        f"Message-ID: <issue-45.{abs(hash(rcpt))}@signal.example.org>\r\n"
        f"List-Id: GET THE SIGNAL <get-the-signal.signal.example.org>\r\n"
    )


def dsn(
    rcpt: str,
    envelope_to: str,
    *,
    action="failed",
    status="5.1.1",
    diagnostic="smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
    return_path: str | None = None,
) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464)."""
    date = format_datetime(clock.now())
    diagnostic = diagnostic.format(rcpt=rcpt)
    boundary = "8D1A31E0A5.1709366400/mx1.example.net"
    text = (
        "This is the mail system at host mx1.example.net.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n"
        if action == "failed"
        else "This is the mail system at host mx1.example.net.\r\n\r\n"
        "####################################################################\r\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
        "####################################################################\r\n"
    )
    return (
        f"Return-Path: <>\r\n"
        f"Delivered-To: {envelope_to}\r\n"
        f"Date: {date}\r\n"
        f"From: MAILER-DAEMON@mx1.example.net (Mail Delivery System)\r\n"
        f"Subject: {'Undelivered Mail Returned to Sender' if action == 'failed' else 'Delayed Mail (still being retried)'}\r\n"
        f"To: {envelope_to}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        f"Message-Id: <20260302080000.8D1A31E0A5@mx1.example.net>\r\n\r\n"
        f"This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{text}\r\n<{rcpt}>: host mx2.example.net[192.0.2.25] said: 550 5.1.1 user unknown\r\n\r\n"
        f"--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx1.example.net\r\nX-Postfix-Queue-ID: 8D1A31E0A5\r\n"
        f"X-Postfix-Sender: rfc822; {envelope_to}\r\nArrival-Date: {date}\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: {action}\r\n"
        f"Status: {status}\r\nRemote-MTA: dns; mx2.example.net\r\nDiagnostic-Code: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{original_headers(rcpt, return_path or envelope_to)}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def arf(rcpt: str, return_path: str, fbl_to="fbl@signal.example.org") -> bytes:
    """An abuse report in the Abuse Reporting Format (RFC 5965), as a mailbox
    provider's feedback loop sends it."""
    boundary = "part1_13d.2e68ed54_boundary"
    date = format_datetime(clock.now())
    return (
        f"From: <staff@hotmail.example>\r\nDate: {date}\r\nSubject: FW: Issue 045\r\nTo: <{fbl_to}>\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary="{boundary}"\r\n\r\n'
        f'--{boundary}\r\nContent-Type: text/plain; charset="US-ASCII"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        f"This is an email abuse report for an email message received from IP\r\n192.0.2.1 on {date}.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{return_path}>\r\nOriginal-Rcpt-To: <{rcpt}>\r\nArrival-Date: {date}\r\n"
        f"Reporting-MTA: dns; mail.receiver.example\r\nSource-IP: 192.0.2.1\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"{original_headers(rcpt, return_path)}Date: {date}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain\r\n\r\nThis week in the signal...\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


# --- HTTP peers ---------------------------------------------------------------


class LoopbackServer:
    """A socketserver-based HTTP server (http.server's or werkzeug's) already
    bound on loopback, answering from a daemon thread until ``stop()``."""

    def __init__(self, server):
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll so that stop() returns at once (the default, 0.5 s, is paid by every test).
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """http.server's handler without the access log on stderr."""

    def log_message(self, *args):
        pass

    def reply(self, status: int, headers: dict[str, str] | None = None, body: bytes | None = None) -> None:
        """Answer ``status`` with ``headers`` and, when given, ``body`` and its Content-Length."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body is not None:
            self.wfile.write(body)


class FakeProvider(LoopbackServer):
    """An ESP's HTTP API (POST and GET): http.server in a thread; ``answer(request) -> (status,
    headers, body)``. An AssertionError raised by ``answer`` (the request broke
    the provider's documented contract) is kept in ``errors`` and answered 400."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[dict] = []
        self.errors: list[str] = []
        provider = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.do_POST(method="GET")

            def do_POST(self, method="POST"):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                request = {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "method": method,
                }
                provider.requests.append(request)
                try:
                    status, headers, payload = provider.answer(request)
                except AssertionError as exc:  # the request broke the provider's documented contract
                    provider.errors.append(str(exc))
                    status, headers, payload = 400, {}, {"message": f"fake provider: {exc}"}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.reply(status, {**headers, "Content-Type": "application/json"}, data)

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    def json(self, n=-1):
        return json.loads(self.requests[n]["body"])


# --- the `newsletter` command as a real process -------------------------------------------


def start_newsletter(args, tmp_path, env_extra=None, *, argv=None, base_url=True):
    """Run ``newsletter ARGS --port P`` (``serve``, ``demo``) — or ``argv(P)`` —
    in ``tmp_path`` on a fresh SQLite database; returns (process, base URL)
    once /healthz answers. ``base_url=False`` leaves NEWSLETTER_BASE_URL unset."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
    )
    if base_url:
        env["NEWSLETTER_BASE_URL"] = f"http://127.0.0.1:{port}"
    env.update(env_extra or {})
    proc = subprocess.Popen(
        argv(port) if argv else [sys.executable, "-m", "newsletter", *args, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{args} exited early:\n{proc.stdout.read()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or no worker yet (gunicorn)
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{args} did not answer in time:\n{proc.stdout.read()}")


def stop_process(proc) -> str:
    """SIGTERM, then its output (SIGKILL if it does not stop)."""
    proc.terminate()
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


# --- DNS ----------------------------------------------------------------------------------


class FakeDns:
    """An authoritative DNS server on 127.0.0.1 (UDP and TCP, one free port)
    answering from ``records``: {("name.", "TXT"): ["text", …], ("name.",
    "MX"): ["10 mx.example.org."], …}. A name with no records is NXDOMAIN.
    TXT values are given plain and split into 255-byte strings as DNS needs.
    Built on dnspython's message parsing; ``resolver`` is what
    NEWSLETTER_DNS_RESOLVER takes."""

    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None):
        import socketserver

        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rrset

        self.records = records if records is not None else {}
        self.queries: list[tuple[str, str]] = []
        fake = self

        def answer(wire: bytes) -> bytes:
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name, rdtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
            fake.queries.append((name, rdtype))
            values = fake.records.get((name, rdtype))
            if values:
                texts = [fake._txt(v) if rdtype == "TXT" else v for v in values]
                response.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, texts))
            elif not any(key[0] == name for key in fake.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                sock.sendto(answer(data), self.client_address)

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self):
                size = int.from_bytes(self.rfile.read(2), "big")
                reply = answer(self.rfile.read(size))
                self.wfile.write(len(reply).to_bytes(2, "big") + reply)

        socketserver.ThreadingUDPServer.allow_reuse_address = True
        for _ in range(50):  # a UDP port free for UDP may be taken for TCP: try another
            self.udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            self.port = self.udp.server_address[1]
            try:
                self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Tcp)
                break
            except OSError:
                self.udp.server_close()
        else:
            raise OSError("no port free for both UDP and TCP on 127.0.0.1")
        for server in (self.udp, self.tcp):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def _txt(value: str) -> str:
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.shutdown()
            server.server_close()


class RoutedServer(LoopbackServer):
    """A real HTTP server answering each path from ``routes``: ``{path:
    (status, headers, body)}`` (a callable value is called with the request
    handler and returns that triple). ``host`` is any loopback address."""

    def __init__(self, routes: dict, host: str = "127.0.0.1"):
        self.routes = routes
        self.requests: list[dict] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                answer = server.routes.get(self.path.split("?", 1)[0])
                if answer is None:
                    self.reply(404, {}, b"not found")
                    return
                status, headers, body = answer(self) if callable(answer) else answer
                self.reply(status, headers, body.encode() if isinstance(body, str) else body)

        super().__init__(ThreadingHTTPServer((host, 0), Handler))
        self.url = f"http://{host}:{self.port}"


class ForwardingProxy(LoopbackServer):
    """A reverse proxy as nginx is configured for the app: it listens on
    ``host``, forwards each request to ``upstream`` from the source address
    ``source``, appends the address it was connected from to
    X-Forwarded-For (``$proxy_add_x_forwarded_for``) and sets
    X-Forwarded-Proto. Chain several to make a proxy chain."""

    def __init__(self, upstream: str, *, host: str, source: str, proto: str = "https"):
        import http.client
        from urllib.parse import urlsplit

        target = urlsplit(upstream)

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "host"}}
                before = self.headers.get("X-Forwarded-For")
                peer = self.client_address[0]
                headers["X-Forwarded-For"] = f"{before}, {peer}" if before else peer
                headers["X-Forwarded-Proto"] = proto
                headers["Host"] = target.netloc
                conn = http.client.HTTPConnection(
                    target.hostname, target.port, timeout=10, source_address=(source, 0)
                )
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in {"connection", "transfer-encoding", "content-length"}:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = _forward

        super().__init__(ThreadingHTTPServer((host, 0), Handler))
        self.url = f"http://{host}:{self.port}"
