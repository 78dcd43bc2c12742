"""``smtp://`` and ``smtps://``: SMTP with STARTTLS (``?tls=starttls``),
implicit TLS (``smtps://``) and AUTH.

The connection is kept open across messages and batches, reset with RSET
after a rejected recipient and reopened when the server drops it.
"""

from __future__ import annotations

import smtplib
import ssl
import threading

from newsletter.delivery.mime import needs_smtputf8
from newsletter.delivery.transports import Dsn
from newsletter.delivery.transports.base import OutgoingMessage, SendResult, TransportError


def classify_smtp_code(code: int) -> str:
    """4xx is transient (greylisting, rate limits); 5xx is permanent."""
    return "transient" if 400 <= code < 500 else "permanent"


class SmtpTransport:
    max_batch = 100

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
    ):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.tls, self.timeout, self.verify = tls, timeout, verify
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_dsn(cls, dsn: Dsn, settings=None) -> SmtpTransport:
        implicit = dsn.scheme == "smtps"
        tls = "implicit" if implicit else dsn.options.get("tls", "none")
        if tls not in {"none", "starttls", "implicit"}:
            raise ValueError(f"tls must be none, starttls or implicit, not {tls!r}")
        return cls(
            dsn.host,
            dsn.port or (465 if implicit else 587 if tls == "starttls" else 25),
            username=dsn.user,
            password=dsn.password,
            tls=tls,
            timeout=float(dsn.options.get("timeout", 30)),
            verify=dsn.options.get("verify", "true") != "false",
        )

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
                    self.host, self.port, timeout=self.timeout, context=self._context(), local_hostname=self.local_hostname
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
                if self.tls == "starttls":
                    conn.starttls(context=self._context())
            if self.username:
                conn.login(self.username, self.password)
            return conn
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
            self._conn = None

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        raw = message.as_bytes()
        envelope_from = message.return_path or message.sender
        from email.utils import parseaddr

        envelope_from = parseaddr(envelope_from)[1]
        for attempt in (1, 2):
            conn = self._connection()
            try:
                options = ["SMTPUTF8"] if needs_smtputf8(message) else []
                refused = conn.sendmail(envelope_from, [message.to], raw, mail_options=options)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(message.to, (550, b"refused"))
                self._reset(conn)
                return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}")
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # service closing: reconnect and let the caller retry
                    self._drop()
                    return SendResult("transient", error=f"421 {_text(exc.smtp_error)}")
                self._reset(conn)
                return SendResult(classify_smtp_code(exc.smtp_code), error=f"{exc.smtp_code} {_text(exc.smtp_error)}")
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
                self._drop()
                if attempt == 2:
                    return SendResult("transient", error=f"connection lost: {exc}")
                continue
            if refused:
                code, text = refused[message.to]
                return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}")
            return SendResult("sent", provider_message_id=message.message_id)
        return SendResult("transient", error="connection lost")

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def send(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        with self._lock:
            return [self._send_one(message) for message in messages]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.quit()
                except (smtplib.SMTPException, OSError):
                    pass
                self._conn = None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
