"""Helpers shared by the tests: a real SMTP server and link extraction."""

from __future__ import annotations

import email
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.policy import default as default_policy

import pytest

REQUIRE_ALL = os.environ.get("NEWSLETTER_REQUIRE_ALL", "") not in ("", "0", "false")


def require(condition: bool, reason: str) -> None:
    """Skip when a real peer (browser, server) is missing; fail in CI."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

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
                    sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 Message accepted for delivery"

        if not self.port:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        kwargs = {}
        if self.auth:
            user, password = self.auth

            def authenticator(server, session, envelope, mechanism, auth_data):
                from aiosmtpd.smtp import AuthResult

                ok = auth_data.login.decode() == user and auth_data.password.decode() == password
                return AuthResult(success=ok)

            kwargs = {"authenticator": authenticator, "auth_require_tls": False}
        self._lock = threading.Lock()
        self._controller = Controller(Handler(), hostname=self.host, port=self.port, enable_SMTPUTF8=True, **kwargs)
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


def run_concurrently(target: Callable[[], object], count: int = 4) -> list[Exception]:
    """Start ``count`` threads that call ``target`` at the same moment (a
    barrier), wait for all of them, and return the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[Exception] = []

    def run():
        barrier.wait()
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
