"""``smtp://`` and ``smtps://``: a pool of persistent SMTP connections with
STARTTLS (``?tls=starttls``), implicit TLS (``smtps://``) and AUTH.

Each ``send(batch)`` borrows two connections from the pool (at most
``pool_size`` open at once, ``NEWSLETTER_SEND_CONCURRENCY`` by default) and
drives both from the calling thread, so the dispatcher runs one thread for
every two connections; connections are reused across batches. With
PIPELINING (RFC 2920) each message's end travels with the next message's
envelope: one round trip a message. A rejected
recipient is followed by RSET, a dropped connection is reopened once and the
message retried on it, and 421 closes the connection (the server asked to).
A batch is built and DKIM-signed (when ``NEWSLETTER_DKIM_*`` is configured)
before its first message goes on the wire.

DSN options: ``tls=none|starttls``, ``timeout=30``, ``verify=false`` (accept
self-signed certificates; development only), ``pool=N``.
"""

from __future__ import annotations

import queue
import smtplib
import socket
import ssl
import threading
from collections.abc import Generator
from email.utils import parseaddr
from functools import lru_cache

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.mime import needs_smtputf8
from newsletter.delivery.transports.base import (
    Accepted,
    Closing,
    Probe,
    SendResult,
    TransportError,
    dkim_signer,
    senders_for,
)
from newsletter.dsn import Dsn
from newsletter.mail_encoding import wire_address


def classify_smtp_code(code: int) -> str:
    """4xx is transient (greylisting, rate limits); 5xx is permanent."""
    return "transient" if 400 <= code < 500 else "permanent"


class _Conn:
    """One pooled connection; ``smtp`` is None when it must be (re)opened."""

    __slots__ = ("smtp",)

    def __init__(self):
        self.smtp: smtplib.SMTP | None = None


class SmtpTransport(Closing):
    # One sending thread drives LANES connections (``_send_on_connections``):
    # as many messages in flight as two threads would keep, without the
    # threads taking turns at the GIL, which cost 8-9 % of the CPU of a send
    # (docs/performance.md, "The tenth session"). Each lane takes up to
    # PER_LANE messages of a batch. A batch costs a claim, a check of its
    # readers and a record, each with a cost of its own whatever the batch's
    # size, so batches are large; each sending thread holds its batch built
    # (the bytes: 25 KB a message of a 20 KB issue; the personalised text and
    # HTML are never joined on this path), so the threads of one process
    # share IN_FLIGHT messages ("The ninth session"). What a crash can resend
    # does not grow with the batch: the wire journal notes each message as the
    # server takes it.
    LANES = 2
    PER_LANE = 100
    IN_FLIGHT = 800
    max_batch = LANES * PER_LANE
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
        sessions: int | None = None,
    ):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.tls, self.timeout, self.verify = tls, timeout, verify
        self.local_hostname = local_hostname
        self.pool_size = max(1, pool_size)
        self.lanes = min(self.LANES, self.pool_size)
        # the threads that share this transport: NEWSLETTER_SEND_CONCURRENCY's sessions, LANES a thread
        senders = senders_for(max(1, sessions or self.pool_size), self)
        self.max_batch = max(1, min(self.PER_LANE * self.lanes, self.IN_FLIGHT // senders))
        self.signer = signer
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._idle: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._closed = False

    @classmethod
    def from_dsn(cls, dsn: Dsn, settings=None) -> SmtpTransport:
        implicit = dsn.scheme == "smtps"
        tls = "implicit" if implicit else dsn.options.get("tls", "none")
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
            signer=dkim_signer(settings),
            sessions=getattr(settings, "send_concurrency", None),
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

    def _send_one(
        self, conn: _Conn, message: OutgoingMessage, following: OutgoingMessage | None, ahead: bool
    ) -> Generator[None, None, tuple[SendResult, bool]]:
        """Send ``message``; returns its result and whether the envelope of
        ``following`` went on the wire with its body (see ``_pipelined``).
        ``ahead``: this message's own envelope is already on the wire.
        A generator: it yields once the message is on the wire, before its
        reply is read, so one thread can drive several connections (``_run_lanes``)."""
        envelope_from = _envelope_sender(message)  # checked by send(): no CR/LF can become a command
        recipient = _bare_address(message.to)
        raw = message.signed_bytes(self.signer)
        smtputf8 = needs_smtputf8(message)
        for attempt in (1, 2):
            if conn.smtp is None:
                ahead = False
                conn.smtp = self._connect()
            try:
                if not smtputf8 and conn.smtp.has_extn("pipelining"):
                    if following is not None and needs_smtputf8(following):
                        following = None
                    return (yield from self._pipelined(conn, message, raw, following, ahead))
                refused = conn.smtp.sendmail(
                    envelope_from,
                    [recipient],
                    raw,
                    mail_options=["SMTPUTF8"] if smtputf8 else [],
                )
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(recipient, (550, b"refused"))
                return self._refused(conn, code, text), False
            except smtplib.SMTPResponseException as exc:
                return self._refused(conn, exc.smtp_code, exc.smtp_error), False
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
                self._drop(conn)
                if attempt == 2:
                    return SendResult("transient", error=f"connection lost: {exc}"), False
                continue
            if refused:
                code, text = refused[recipient]
                return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}"), False
            return SendResult("sent", provider_message_id=message.message_id), False
        return SendResult("transient", error="connection lost"), False

    def _refused(self, conn: _Conn, code: int, text) -> SendResult:
        """A refusal: 421 closes the connection (the server asked to), anything
        else is followed by RSET so the connection can carry the next message."""
        if code == 421:
            self._drop(conn)
        else:
            self._reset(conn)
        return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}")

    def _pipelined(
        self,
        conn: _Conn,
        message: OutgoingMessage,
        raw: bytes,
        following: OutgoingMessage | None,
        ahead: bool,
    ) -> Generator[None, None, tuple[SendResult, bool]]:
        """RFC 2920 PIPELINING: MAIL, RCPT and DATA go out in one write, and
        the message content is followed in the same write by the next
        message's MAIL, RCPT and DATA ("the actual transfer of message
        content is explicitly allowed to be the first command in a group").
        That is one round trip a message instead of four. The end-of-data
        reply closes a transaction whatever it says, so a refused message does
        not disturb the envelope already sent behind it."""
        smtp = conn.smtp
        tail = _envelope(following) if following is not None else b""  # (send() checked its addresses)
        if not ahead:
            smtp.sock.sendall(_envelope(message))
        mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            smtp.sock.sendall(b".\r\n")  # a server that opened DATA anyway: send an empty message's end…
            smtp.getreply()
            data = (554, b"no valid recipients")  # …and treat it as refused
        for code, text in (mail, rcpt, data):
            if code not in (250, 251, 354):
                return self._refused(conn, code, text), False
        body = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
        if body.startswith(b"."):
            body = b"." + body
        # dot-stuffing (RFC 5321 4.5.2), skipped when the builder knows no line starts with a dot
        if message.built().dot_lines is not False and b"\r\n." in body:
            body = body.replace(b"\r\n.", b"\r\n..")
        smtp.sock.sendall(b"".join([body, b".\r\n", tail]))
        yield  # the other lanes put their messages on the wire while the server reads this one
        code, text = smtp.getreply()
        if code == 250:
            return SendResult("sent", provider_message_id=message.message_id), following is not None
        if code == 421:
            self._drop(conn)
            return SendResult("transient", error=f"{code} {_text(text)}"), False
        # The transaction is over; no RSET (it would land inside the next DATA).
        return SendResult(classify_smtp_code(code), error=f"{code} {_text(text)}"), following is not None

    def send(self, messages: list[OutgoingMessage], accepted: Accepted | None = None) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        ready: list[int] = []
        for index, message in enumerate(messages):
            try:
                _envelope_sender(message)
                _bare_address(message.to)
                message.built()
            except ValueError as exc:  # a line break in an address or header: never on the wire
                results[index] = SendResult("rejected", error=str(exc))
            else:
                ready.append(index)
        # Build, then DKIM-sign, the whole batch before taking a connection:
        # each kind of work runs back to back, which costs less CPU a message
        # than alternating them (the RSA code evicts what the rest had in
        # cache), and no connection idles meanwhile.
        if self.signer is not None:
            self.signer.sign_messages([messages[i] for i in ready])
        if ready:
            sent = self._send_on_connections([messages[i] for i in ready], accepted)
            results.update(zip(ready, sent, strict=True))
        return [results[i] for i in range(len(messages))]

    def _send_on_connections(
        self, messages: list[OutgoingMessage], accepted: Accepted | None
    ) -> list[SendResult]:
        """Send ``messages`` over up to ``lanes`` connections from this one
        thread, message i on lane i % lanes, the lanes taking turns: on its
        turn a lane reads the reply to its last message and puts its next one
        on the wire. The server answers one lane while this thread writes to
        the other, so the lanes keep as many messages in flight as as many
        threads would, without threads taking turns at the GIL
        (docs/performance.md, "The tenth session"). The first lane waits for
        a free connection; a further lane is used only when a connection is
        free now and open (or opens), so a server that allows fewer
        connections gets fewer lanes."""
        self._slots.acquire()
        conns = [self._idle_or_new()]  # one a slot held
        try:
            self._opened(conns[0])  # TransportError: the whole batch waits
            while len(conns) < min(self.lanes, len(messages)) and self._slots.acquire(blocking=False):
                try:
                    conns.append(self._opened(self._idle_or_new()))
                except TransportError:
                    self._slots.release()
                    break
            return self._run_lanes(conns, messages, accepted)
        finally:
            for _ in conns:
                self._slots.release()

    def _idle_or_new(self) -> _Conn:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return _Conn()

    def _opened(self, conn: _Conn) -> _Conn:
        if conn.smtp is None:
            conn.smtp = self._connect()
        return conn

    def _run_lanes(
        self, conns: list[_Conn], messages: list[OutgoingMessage], accepted: Accepted | None
    ) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        # message i goes on lane i % lanes
        shares = [range(k, len(messages), len(conns)) for k in range(len(conns))]
        lanes = {
            k: self._lane(conn, list(shares[k]), messages, results, accepted) for k, conn in enumerate(conns)
        }
        on_wire = False
        try:
            while lanes:
                for k, lane in list(lanes.items()):
                    try:
                        next(lane)
                        on_wire = True
                    except StopIteration:
                        del lanes[k]
                    except TransportError as exc:
                        del lanes[k]
                        if not on_wire and not results:
                            raise  # nothing judged: the whole batch waits
                        for index in shares[k]:
                            results.setdefault(index, SendResult("transient", error=str(exc)))
        finally:
            for lane in lanes.values():
                lane.close()  # (only when raising: a lane mid-message drops its connection)
        return [results[i] for i in range(len(messages))]

    def _lane(
        self,
        conn: _Conn,
        indexes: list[int],
        messages: list[OutgoingMessage],
        results: dict[int, SendResult],
        accepted: Accepted | None,
    ) -> Generator[None, None, None]:
        """One connection's share of a batch, message after message; yields
        whenever a message is on the wire and its reply not yet read."""
        ahead = clean = False
        try:
            for position, index in enumerate(indexes):
                message = messages[index]
                following = messages[indexes[position + 1]] if position + 1 < len(indexes) else None
                result, ahead = yield from self._send_one(conn, message, following, ahead)
                results[index] = result
                if accepted is not None and result.ok:
                    accepted(message, result)  # the server's 250: journalled before the next message
            clean = True
        finally:
            if clean and conn.smtp is not None and not self._closed and not ahead:
                self._idle.put(conn)
            else:
                self._drop(conn)

    def probe(self) -> Probe:
        """Connect, EHLO, STARTTLS (``tls=starttls``) or implicit TLS, AUTH with
        the DSN's credentials, QUIT: the whole handshake a send does."""
        try:
            conn = self._connect()
        except TransportError as exc:
            return Probe("fail", str(exc))
        try:
            extensions = sorted(k.upper() for k in conn.esmtp_features)
            banner = (conn.ehlo_resp or b"").decode("utf-8", "replace").split("\n")[0].strip()
            secure = {"implicit": "implicit TLS", "starttls": "STARTTLS"}.get(self.tls, "no TLS")
            login = f"AUTH as {self.username} accepted" if self.username else "no AUTH (no user in the DSN)"
        finally:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
        detail = f"{self.host}:{self.port} answered ({banner}); {secure}; {login}; {', '.join(extensions)}"
        if self.tls == "none" and self.host not in ("127.0.0.1", "localhost", "::1"):
            return Probe(
                "warn", detail + " — credentials and mail travel unencrypted: use ?tls=starttls or smtps://"
            )
        return Probe("pass", detail)

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


def _envelope(message: OutgoingMessage) -> bytes:
    """MAIL, RCPT and DATA of one message (ASCII addresses: the pipelined path)."""
    recipient = _bare_address(message.to)
    return f"MAIL FROM:<{_envelope_sender(message)}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")


def _envelope_sender(message: OutgoingMessage) -> str:
    """The VERP return path (a bare address, one per delivery) or the From address."""
    if message.return_path:
        return _bare_address(message.return_path)
    return _from_address(message.sender)


_UNSAFE = frozenset("<>\r\n \x00")


def _bare_address(address: str) -> str:
    """The address for MAIL FROM / RCPT TO: checked, its domain in A-labels
    (an ASCII local part at an IDN domain goes without SMTPUTF8)."""
    if not address or not _UNSAFE.isdisjoint(address):
        raise ValueError(f"unusable envelope address {address!r}")
    return wire_address(address)


@lru_cache(maxsize=64)
def _from_address(value: str) -> str:
    return _bare_address(parseaddr(value)[1])


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_dsn(dsn: Dsn) -> None:
    if not dsn.host:
        raise ValueError(f"{dsn.scheme}:// needs a host, e.g. {dsn.scheme}://user:pass@mail.example.com:587")
    if dsn.options.get("tls", "none") not in {"none", "starttls", "implicit"}:
        raise ValueError(f"tls must be none, starttls or implicit, not {dsn.options['tls']!r}")


def from_dsn(dsn: Dsn, settings=None) -> SmtpTransport:
    return SmtpTransport.from_dsn(dsn, settings)
