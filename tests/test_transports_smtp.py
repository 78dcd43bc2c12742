"""The SMTP transport's connection pool against a real server (aiosmtpd):
reuse, the pool bound, one thread's lanes, RSET after a refusal, reconnect
after a drop, STARTTLS with AUTH — each with and without PIPELINING (RFC 2920), which
aiosmtpd handles but does not announce, so the server here announces it
when asked to; the pipelined path is the one Postfix and the big receivers
take."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections import Counter

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports import make_transport
from tests.helpers import free_port, race, start_peers


class CountingServer:
    """aiosmtpd that counts sessions (EHLO), RSETs and open connections."""

    def __init__(self, *, tls_context=None, auth=None, pipelining=False):
        self.counts = Counter()
        self.received = []
        self.bodies: dict[str, bytes] = {}
        self.refuse: set[str] = set()
        self.refuse_data: set[str] = set()
        self.close_on: set[str] = set()
        self.max_open: int | None = None  # connections beyond it are greeted with 421 and closed
        self.max_open_after_close: int | None = None  # max_open from a close_on's 421 on
        self.open = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler:
            async def handle_EHLO(self, srv, session, envelope, hostname, responses):
                with server.lock:
                    server.counts["ehlo"] += 1
                session.host_name = hostname
                if pipelining:
                    responses.insert(1, "250-PIPELINING")
                return responses

            async def handle_RSET(self, srv, session, envelope):
                server.counts["rset"] += 1
                return "250 OK"

            async def handle_RCPT(self, srv, session, envelope, address, options):
                if address in server.close_on:
                    server.close_on.discard(address)
                    server.max_open = server.max_open_after_close
                    return "421 4.3.2 shutting down"
                if address in server.refuse:
                    return "550 5.1.1 no such user"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, srv, session, envelope):
                if envelope.rcpt_tos[0] in server.refuse_data:
                    return "554 5.7.1 content refused"
                server.received.append(envelope.rcpt_tos[0])
                server.bodies[envelope.rcpt_tos[0]] = envelope.original_content
                return "250 OK"

        self.port = free_port()
        kwargs = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if auth is not None:
            kwargs.update(
                authenticator=lambda srv, session, env, mech, data: AuthResult(
                    success=(data.login.decode(), data.password.decode()) == auth,
                    handled=False,  # a failure is answered 535 (handled=True would answer nothing)
                ),
                auth_require_tls=True,
            )

        class Counting(Controller):
            def factory(inner):
                smtp = super().factory()
                original = smtp.connection_made

                def made(transport):
                    with server.lock:
                        server.open += 1
                        full = server.max_open is not None and server.open > server.max_open
                        if not full:
                            server.peak = max(server.peak, server.open)
                    original(transport)
                    if full:
                        server.counts["turned away"] += 1
                        transport.write(b"421 4.7.0 too many connections\r\n")
                        transport.close()

                received = smtp.data_received

                def data(chunk):
                    # the end of one message and the next envelope in one write
                    if b"\r\n.\r\nMAIL FROM:" in chunk:
                        server.counts["pipelined"] += 1
                    received(chunk)

                smtp.data_received = data
                lost = smtp.connection_lost

                def gone(exc):
                    with server.lock:
                        server.open -= 1
                    lost(exc)

                smtp.connection_made, smtp.connection_lost = made, gone
                return smtp

        self.controller = Counting(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def counting_server(request):
    yield from start_peers(lambda **kwargs: CountingServer(pipelining=request.param, **kwargs))


def batch(n, start=0):
    return [
        OutgoingMessage(sender="S <s@example.org>", to=f"r{i}@example.org", subject="s", text="x")
        for i in range(start, start + n)
    ]


def test_connections_are_reused_across_batches(counting_server):
    server = counting_server()
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=2")
    for n in range(3):
        assert all(r.ok for r in transport.send(batch(5, n * 5)))
    transport.close()
    assert server.counts["ehlo"] == transport.lanes == 2  # each lane's connection opened once
    assert len(server.received) == 15


def test_one_thread_spreads_a_batch_over_its_lanes(counting_server):
    """A send drives two connections from the calling thread: both carry
    messages at once, every message arrives once and the results come back
    in the batch's order."""
    server = counting_server()
    server.refuse = {"r3@example.org"}
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=4")
    results = transport.send(batch(11))
    transport.close()
    assert [r.status for r in results] == ["sent"] * 3 + ["permanent"] + ["sent"] * 7
    assert server.peak == server.counts["ehlo"] == 2
    assert sorted(server.received) == sorted(f"r{i}@example.org" for i in range(11) if i != 3)


def test_a_server_that_takes_one_connection_gets_one_lane(counting_server):
    """A second lane the server turns away (421 at the greeting) is not
    used: the whole batch goes over the one connection, nothing is
    charged a failed attempt."""
    server = counting_server()
    server.max_open = 1
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=2")
    for n in range(2):
        assert all(r.ok for r in transport.send(batch(6, n * 6)))
    transport.close()
    assert server.counts["turned away"] >= 1 and server.peak == 1
    assert sorted(server.received) == sorted(f"r{i}@example.org" for i in range(12))


def test_pool_bounds_parallel_connections(counting_server):
    server = counting_server()
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=2")
    results = []
    outcomes = race(*[lambda n=n: results.extend(transport.send(batch(20, n * 20))) for n in range(6)])
    transport.close()
    assert len(results) == 120 and all(r.ok for r in results), outcomes
    assert server.peak <= 2 and server.counts["ehlo"] <= 2
    assert sorted(server.received) == sorted(f"r{i}@example.org" for i in range(120))


def test_a_lane_that_cannot_reconnect_leaves_its_messages_for_a_retry(counting_server):
    """A lane whose connection the server closes (421) and will not take
    again: that lane's messages still to go come back transient, the other
    lane's are sent and each is reported in the batch's order."""
    server = counting_server()
    server.close_on, server.max_open_after_close = {"r3@example.org"}, 1
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=2")
    results = transport.send(batch(10))
    transport.close()
    statuses = [r.status for r in results]
    assert statuses[0::2] == ["sent"] * 5  # lane 0: r0, r2, r4, r6, r8
    assert statuses[1::2] == ["sent", "transient", "transient", "transient", "transient"]
    assert sorted(server.received) == sorted(f"r{i}@example.org" for i in (0, 1, 2, 4, 6, 8))


def test_rset_after_refused_recipient_then_same_connection_continues(counting_server):
    server = counting_server()
    server.refuse = {"r1@example.org"}
    results = send_once(server, batch(3))
    assert [r.status for r in results] == ["sent", "permanent", "sent"]
    assert server.counts["rset"] >= 1 and server.counts["ehlo"] == 1
    assert server.received == ["r0@example.org", "r2@example.org"]


def test_reconnects_after_the_server_drops_the_connection(counting_server):
    server = counting_server()
    server.close_on = {"r1@example.org"}
    results = send_once(server, batch(3))
    assert [r.status for r in results] == ["sent", "transient", "sent"]
    assert results[1].error.startswith("421")
    assert server.counts["ehlo"] == 2


def test_unreachable_server_fails_the_whole_batch_transiently():
    from newsletter.delivery.transports import TransportError

    transport = make_transport("smtp://127.0.0.1:9?timeout=2")
    with pytest.raises(TransportError) as info:
        transport.send(batch(2))
    assert not info.value.fatal


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_starttls_and_auth(counting_server, tmp_path):
    server = counting_server(tls_context=_self_signed(tmp_path), auth=("mailer", "s3cret"))
    good = make_transport(f"smtp://mailer:s3cret@127.0.0.1:{server.port}?tls=starttls&verify=false")
    assert all(r.ok for r in good.send(batch(2)))
    good.close()
    from newsletter.delivery.transports import TransportError

    bad = make_transport(f"smtp://mailer:wrong@127.0.0.1:{server.port}?tls=starttls&verify=false&timeout=3")
    with pytest.raises(TransportError) as refused:
        bad.send(batch(1))
    # the server's 535: the send is paused (fatal), not retried as a dropped connection
    assert refused.value.fatal and "login" in str(refused.value) and "535" in str(refused.value)
    plain = make_transport(f"smtp://mailer:s3cret@127.0.0.1:{server.port}?timeout=3")
    with pytest.raises(TransportError):
        plain.send(batch(1))
    assert sorted(server.received) == ["r0@example.org", "r1@example.org"]  # (two connections: any order)


def test_pipelining_sends_each_body_with_the_next_envelope(counting_server):
    """With PIPELINING, one write carries a message's end and the next MAIL,
    RCPT and DATA: one round trip a message. Bodies arrive intact, dot-stuffing
    included."""
    server = counting_server()
    messages = batch(6)
    messages[2].text = ".leading dot\n.\n..two\nend"
    results = send_once(server, messages)
    assert all(r.ok for r in results)
    assert server.received == [f"r{i}@example.org" for i in range(6)]
    import email

    body = email.message_from_bytes(server.bodies["r2@example.org"]).get_payload(decode=True)
    assert body.replace(b"\r\n", b"\n").rstrip(b"\n") == b".leading dot\n.\n..two\nend"
    if "PIPELINING" in _announced(server):
        assert server.counts["pipelined"] >= 4
    else:
        assert server.counts["pipelined"] == 0


def test_a_refused_message_does_not_disturb_the_envelope_pipelined_behind_it(counting_server):
    server = counting_server()
    server.refuse_data = {"r1@example.org", "r2@example.org"}
    results = send_once(server, batch(5))
    assert [r.status for r in results] == ["sent", "permanent", "permanent", "sent", "sent"]
    assert results[1].error.startswith("554")
    assert server.received == ["r0@example.org", "r3@example.org", "r4@example.org"]
    assert server.counts["ehlo"] == 1


def test_an_address_with_a_line_break_never_reaches_the_wire(counting_server):
    """CR/LF in an envelope address would be an SMTP command of its own."""
    server = counting_server()
    messages = batch(3)
    messages[1].to = "r1@example.org>\r\nRCPT TO:<victim@example.org"
    results = send_once(server, messages)
    assert [r.status for r in results] == ["sent", "rejected", "sent"]
    assert "unusable envelope address" in results[1].error
    assert server.received == ["r0@example.org", "r2@example.org"]


def send_once(server, messages):
    """One batch through a fresh transport to ``server`` over one connection
    (the tests that use it follow one connection's commands), closed afterwards."""
    transport = make_transport(f"smtp://127.0.0.1:{server.port}?pool=1")
    try:
        return transport.send(messages)
    finally:
        transport.close()


def _announced(server) -> str:
    import smtplib

    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as probe:
        return probe.ehlo()[1].decode().upper()


def test_a_batch_signed_at_once_arrives_with_a_valid_signature_on_every_message(
    counting_server, make_settings, tmp_path
):
    """The transport builds and DKIM-signs a whole batch before sending it;
    every message the server received verifies with dkimpy, and each
    signature is the message's own (its To and List-Unsubscribe)."""
    import dkim

    from newsletter.delivery.dkim import generate_key

    record = generate_key(tmp_path / "dkim.pem").encode()
    settings = make_settings(
        dkim_domain="example.org", dkim_selector="gts", dkim_key_file=str(tmp_path / "dkim.pem")
    )
    server = counting_server()
    messages = batch(8)
    for n, message in enumerate(messages):
        message.headers = {"List-Unsubscribe": f"<https://news.example.org/unsubscribe/{n}.tok>"}
    transport = make_transport(f"smtp://127.0.0.1:{server.port}", settings)
    try:
        results = transport.send(messages)
    finally:
        transport.close()
    assert all(r.ok for r in results)
    assert len(server.bodies) == 8
    for n in range(8):
        raw = server.bodies[f"r{n}@example.org"]
        assert raw.startswith(b"DKIM-Signature:")
        assert dkim.verify(raw, dnsfunc=lambda *args, **kwargs: record)
        assert f"/unsubscribe/{n}.tok".encode() in raw
    swapped = server.bodies["r0@example.org"].replace(b"/unsubscribe/0.tok", b"/unsubscribe/1.tok")
    assert not dkim.verify(swapped, dnsfunc=lambda *args, **kwargs: record)
