"""``smtp://`` and ``smtps://``: a pool of persistent SMTP connections with
STARTTLS (``?tls=starttls``), implicit TLS (``smtps://``) and AUTH.

Each ``send(batch)`` borrows one connection from the pool (at most
``pool_size`` open at once, ``NEWSLETTER_SEND_CONCURRENCY`` by default), so
the dispatcher's threads each talk over their own connection and reuse it
across batches. A rejected recipient is followed by RSET, a dropped
connection is reopened once and the message retried on it, and 421 closes
the connection (the server asked to). Messages are DKIM-signed here, right
before they go on the wire, when ``NEWSLETTER_DKIM_*`` is configured.

DSN options: ``tls=none|starttls``, ``timeout=30``, ``verify=false`` (accept
self-signed certificates; development only), ``pool=N``.
"""

from __future__ import annotations

import queue
import smtplib
import socket
import ssl
import threading
from email.utils import parseaddr
from functools import lru_cache

from newsletter.delivery.mime import needs_smtputf8
from newsletter.delivery.transports import Dsn
from newsletter.delivery.transports.base import OutgoingMessage, SendResult, TransportError


def classify_smtp_code(code: int) -> str:
    """4xx is transient (greylisting, rate limits); 5xx is permanent."""
    return "transient" if 400 <= code < 500 else "permanent"


class _Conn:
    """One pooled connection; ``smtp`` is None when it must be (re)opened."""

    __slots__ = ("smtp",)

    def __init__(self):
        self.smtp: smtplib.SMTP | None = None


class SmtpTransport:
    # Outcomes are recorded per batch, so the batch is also what a crash can
    # leave in flight (and resend): 50 keeps that small at two database
    # writes per 50 messages.
    max_batch = 50
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        tls: str = "none",  # none | starttls | implicit
        timeout: float = 30.0,
        verify: bool = True,
        local_hostname: str | None = None,
        pool_size: int = 4,
        signer=None,
    ):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.tls, self.timeout, self.verify = tls, timeout, verify
        self.local_hostname = local_hostname
        self.pool_size = max(1, pool_size)
        self.signer = signer
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._idle: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._closed = False

    @classmethod
    def from_dsn(cls, dsn: Dsn, settings=None) -> SmtpTransport:
        from newsletter.delivery.dkim import DkimSigner

        implicit = dsn.scheme == "smtps"
        tls = "implicit" if implicit else dsn.options.get("tls", "none")
        if tls not in {"none", "starttls", "implicit"}:
            raise ValueError(f"tls must be none, starttls or implicit, not {tls!r}")
        pool = int(dsn.options.get("pool", getattr(settings, "send_concurrency", 4) or 4))
        return cls(
            dsn.host,
            dsn.port or (465 if implicit else 587 if tls == "starttls" else 25),
            username=dsn.user,
            password=dsn.password,
            tls=tls,
            timeout=float(dsn.options.get("timeout", 30)),
            verify=dsn.options.get("verify", "true") != "false",
            pool_size=pool,
            signer=DkimSigner.from_settings(settings),
        )

    # --- connections -------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.tls == "implicit":
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=self._context(),
                    local_hostname=self.local_hostname,
                )
            else:
                conn = smtplib.SMTP(
                    self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
                )
                if self.tls == "starttls":
                    conn.starttls(context=self._context())
            conn.ehlo_or_helo_if_needed()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # commands are small writes
            if self.username:
                conn.login(self.username, self.password)
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"SMTP login to {self.host}:{self.port} refused: {exc}", fatal=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc

    @staticmethod
    def _drop(conn: _Conn) -> None:
        if conn.smtp is not None:
            try:
                conn.smtp.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
            conn.smtp = None

    @staticmethod
    def _reset(conn: _Conn) -> None:
        try:
            conn.smtp.rset()
        except (smtplib.SMTPException, OSError):
            SmtpTransport._drop(conn)

    # --- sending -------------------------------------------------------------------

    def _send_one(self, conn: _Conn, message: OutgoingMessage) -> SendResult:
        raw = message.signed_bytes(self.signer)
        envelope_from = _envelope_address(message.return_path or message.sender)
        smtputf8 = needs_smtputf8(message)
        for attempt in (1, 2):
            if conn.smtp is None:
                conn.smtp = self._connect()
            try:
                if not smtputf8 and conn.smtp.has_extn("pipelining"):
                    return self._pipelined(conn, envelope_from, message.to, raw, message.message_id)
                refused = conn.smtp.sendmail(
                    envelope_from, [message.to], raw, mail_options=["SMTPUTF8"] if smtputf8 else []
                )
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(message.to, (550, b"refused"))
                return self._refused(conn, code, text)
            except smtplib.SMTPResponseException as exc:
                return self._refused(conn, exc.smtp_code, exc.smtp_error)
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
                self._drop(conn)
                if attempt == 2:
                    return SendResult("transient", error=f"connection lost: {exc}")
                continue
            if refused:
                code, text = refused[message.to]
                return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}")
            return SendResult("sent", provider_message_id=message.message_id)
        return SendResult("transient", error="connection lost")

    def _refused(self, conn: _Conn, code: int, text) -> SendResult:
        """A refusal: 421 closes the connection (the server asked to), anything
        else is followed by RSET so the connection can carry the next message."""
        if code == 421:
            self._drop(conn)
        else:
            self._reset(conn)
        return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}")

    def _pipelined(self, conn: _Conn, sender: str, recipient: str, raw: bytes, message_id: str) -> SendResult:
        """MAIL, RCPT and DATA in one write (RFC 2920 PIPELINING), then the
        body: two round trips a message instead of four."""
        smtp = conn.smtp
        smtp.sock.sendall(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii"))
        mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            smtp.sock.sendall(b".\r\n")  # a server that opened DATA anyway: send an empty message's end…
            smtp.getreply()
            data = (554, b"no valid recipients")  # …and treat it as refused
        for code, text in (mail, rcpt, data):
            if code not in (250, 251, 354):
                return self._refused(conn, code, text)
        body = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
        if body.startswith(b"."):
            body = b"." + body
        smtp.sock.sendall(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, text = smtp.getreply()
        if code != 250:
            return self._refused(conn, code, text)
        return SendResult("sent", provider_message_id=message_id)

    def send(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = _Conn()
            results: list[SendResult] = []
            try:
                for index, message in enumerate(messages):
                    try:
                        results.append(self._send_one(conn, message))
                    except TransportError as exc:
                        if index == 0:
                            raise  # nothing judged: the whole batch waits
                        results.extend(SendResult("transient", error=str(exc)) for _ in messages[index:])
                        break
            finally:
                if conn.smtp is not None and not self._closed:
                    self._idle.put(conn)
                else:
                    self._drop(conn)
            return results

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                conn.smtp.quit()
            except (smtplib.SMTPException, OSError, AttributeError):
                self._drop(conn)


@lru_cache(maxsize=256)
def _envelope_address(value: str) -> str:
    address = parseaddr(value)[1]
    if any(c in address for c in "<>\r\n "):
        raise ValueError(f"unusable envelope address {value!r}")
    return address


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
