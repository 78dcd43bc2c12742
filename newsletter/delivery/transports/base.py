"""The transport protocol, modelled on Django's mail backends.

A transport has a ``name``, takes a batch of ``OutgoingMessage``
(``delivery.message``; at most ``max_batch``) and returns one
``SendResult`` per message, in order. ``accepted(message, result)``, when
given, is called for each message the moment the provider has taken it (an
SMTP server's 250, an API's answer), before ``send`` returns: the sender's
wire journal (``delivery.journal``) writes it down, so a crash later in the
batch cannot send it twice. It never raises for a single
recipient's failure: that is a result. It raises ``TransportError`` only
when the whole batch could not be attempted (so the dispatcher retries the
batch later). A transport whose ``send`` spreads a batch over several
connections says how many in ``lanes``, and the dispatcher runs that many
times fewer threads (``senders_for``). ``close()`` releases connections;
every transport is also a context manager that closes itself.

A provider is one module in this package that declares ``SCHEMES`` (the
DSN schemes it serves), ``check_dsn(dsn)`` (its DSN rules, raising
ValueError with an example) and ``from_dsn(dsn, settings)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from newsletter.delivery.message import OutgoingMessage


@dataclass
class SendResult:
    """What happened to one message.

    ``status``: ``sent``; ``transient`` (retry later, after ``retry_after``
    seconds when the provider said so); ``permanent`` (the address is bad:
    bounce and suppress); ``rejected`` (this message will never be accepted,
    e.g. the provider refused its content, but the address is not known to
    be bad: fail the row with the reason, do not suppress).
    """

    status: str
    provider_message_id: str = ""
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "sent"


@dataclass
class Probe:
    """What ``transport.probe()`` found out without sending anything: the
    server answered and took the credentials (``pass``), answered with a
    reservation (``warn``: a sending-only key, an unverified domain), or
    refused (``fail``). ``detail`` says what was seen."""

    status: str  # pass | warn | fail
    detail: str


class TransportError(Exception):
    """The whole batch failed before any message could be judged (connection
    refused, timeout, 429 or 5xx from the API front door). Nothing in the
    batch is charged an attempt; the batch goes back to the queue."""

    def __init__(self, message: str, retry_after: float | None = None, *, fatal: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        # fatal: retrying cannot help until a person acts (bad credentials,
        # unverified sender); the dispatcher pauses the issue instead of spinning.
        self.fatal = fatal


Accepted = Callable[["OutgoingMessage", SendResult], None]


def senders_for(sessions: int, transport) -> int:
    """How many sending threads keep ``sessions`` connections or requests
    busy: one for every ``lanes`` connections of a transport whose
    ``send`` drives several (SMTP), one a session for the others."""
    return -(-sessions // getattr(transport, "lanes", 1))


class Transport(Protocol):
    name: str
    max_batch: int

    def send(self, messages: list[OutgoingMessage], accepted: Accepted | None = None) -> list[SendResult]: ...

    def close(self) -> None: ...

    def probe(self) -> Probe:
        """Reach the server and prove the credentials with its cheapest
        authenticated call (SMTP: EHLO, STARTTLS, AUTH); sends nothing."""
        ...


class Closing:
    """Mixin: ``with make_transport(...) as transport:`` closes it at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dkim_signer(settings):
    """The DKIM signer ``settings`` configure, or None. DKIM's code (dkimpy and
    the RSA bindings, 50 ms of imports) is loaded only when a key is set, so a
    send without DKIM does not wait for it."""
    if not (settings and settings.dkim_domain):  # (config: all three DKIM settings or none)
        return None
    from newsletter.delivery.dkim import DkimSigner

    return DkimSigner.from_settings(settings)
