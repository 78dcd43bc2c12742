"""Fetching a feed URL without becoming a way into the private network.

A feed URL is a request the server makes on someone's say-so, so it must
not reach what only the server can reach (the cloud's metadata service,
an admin panel on localhost, the office network):

* only http(s); ``file://`` only when the caller says so (the CLI's
  ``--allow-file``), never from ``NEWSLETTER_FEEDS``;
* the host's addresses must all be public: loopback, private, link-local
  (169.254.169.254, the metadata address), shared, multicast, reserved and
  unspecified addresses are refused, IPv4-mapped or embedded ones included.
  The name is resolved and checked before connecting, and the address the
  socket actually connected to is checked again (``_CheckedConnection``),
  so a name that resolves to a public address once and a private one the
  next time (DNS rebinding) gets nowhere;
* redirects are followed by hand, at most ``MAX_REDIRECTS``, and only on
  the same host (http → https allowed, never back);
* no proxy from the environment, timeouts, a size cap.

``NEWSLETTER_FEED_ALLOW_HOSTS`` names hosts an operator trusts to be
private (an intranet feed): their addresses are not checked.

``fetch`` returns the body, the final response's headers (lower-cased
names, for feedparser's ``response_headers``: the charset of a feed comes
from its Content-Type) and the final URL.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

TIMEOUT = (5, 20)  # connect, read (seconds)
MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "GET-THE-SIGNAL/1 (+https://github.com/; newsletter feed reader)"
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"


class FeedError(RuntimeError):
    """The feed could not be fetched or parsed; the message says why."""


class AddressRefused(OSError):
    """A connection to an address the policy refuses (raised at connect time)."""


@dataclass
class Fetched:
    body: bytes | None  # None when the server answered 304 Not Modified
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    url: str = ""  # after same-host redirects


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address in the last 32 bits


def refused_reason(address: str) -> str | None:
    """Why ``address`` may not be fetched from, or None when it is public.
    An IPv4 address inside an IPv6 one (mapped, 6to4, Teredo, NAT64) is judged too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip]
    if ip.version == 6 and ip in NAT64:  # DNS64 on an IPv6-only host: the IPv4 address inside decides
        candidates = [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    elif ip.version == 6:
        candidates += [x for x in (ip.ipv4_mapped, ip.sixtofour) if x is not None]
        if ip.teredo:
            candidates += list(ip.teredo)
    for one in candidates:
        for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
            if getattr(one, f"is_{name}"):
                return f"{name.replace('_', '-')} address {one}"
        if not one.is_global:
            return f"non-public address {one}"
    return None


@dataclass(frozen=True)
class Policy:
    """Which hosts may resolve to non-public addresses (the operator's list)."""

    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings) -> Policy:
        return cls(frozenset(h.strip().lower().strip("[]") for h in settings.feed_allow_hosts if h.strip()))

    def trusted(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allow_hosts

    def check_name(self, host: str, port: int) -> None:
        """Resolve ``host`` and refuse it unless every address is public."""
        if self.trusted(host):
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FeedError(f"cannot resolve {host}: {exc}") from None
        for info in infos:
            reason = refused_reason(info[4][0])
            if reason:
                raise FeedError(
                    f"{host} resolves to a {reason}: feeds are fetched from public addresses only "
                    "(NEWSLETTER_FEED_ALLOW_HOSTS names hosts you trust)"
                )

    def check_peer(self, host: str, sock: socket.socket) -> None:
        """Refuse a connected socket whose peer is not public."""
        if self.trusted(host):
            return
        reason = refused_reason(sock.getpeername()[0])
        if reason:
            sock.close()
            raise AddressRefused(f"{host} connected to a {reason}")


def _checked(base: type, policy: Policy) -> type:
    """``base`` (a urllib3 connection class) that checks the address it connected to."""

    def _new_conn(self):
        sock = base._new_conn(self)
        policy.check_peer(self.host, sock)
        return sock

    return type(f"Checked{base.__name__}", (base,), {"_new_conn": _new_conn})


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, policy: Policy):
        self.policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedPool", (HTTPConnectionPool,), {"ConnectionCls": _checked(HTTPConnection, self.policy)}),
            "https": type("CheckedSPool", (HTTPSConnectionPool,), {"ConnectionCls": _checked(HTTPSConnection, self.policy)}),
        }  # fmt: skip


def _session(policy: Policy) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc from the environment
    adapter = _CheckedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _read_file(url: str) -> Fetched:
    path = Path(url2pathname(urlsplit(url).path))
    try:
        with path.open("rb") as handle:
            body = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror}") from None
    if len(body) > MAX_BYTES:
        raise FeedError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return Fetched(body, {}, url)


def _next_url(current: str, location: str | None) -> str:
    """Where a redirect leads, if it stays on the same host and does not downgrade."""
    if not location:
        raise FeedError(f"{current} redirected without a Location")
    target = urljoin(current, location.strip())
    here, there = urlsplit(current), urlsplit(target)
    if there.scheme not in {"http", "https"} or (here.scheme == "https" and there.scheme != "https"):
        raise FeedError(f"{current} redirected to {there.scheme or 'a relative'}: URL; not followed")
    if (there.hostname or "").lower() != (here.hostname or "").lower():
        raise FeedError(f"{current} redirected to another host ({there.hostname}); not followed")
    return target


def fetch(
    url: str,
    settings,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_file: bool = False,
) -> Fetched:
    """GET ``url`` under the policy above (conditional when ``etag`` or
    ``last_modified`` are given); raises FeedError with the reason."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        if not allow_file:
            raise FeedError("file:// feeds are read only from the command line, with --allow-file")
        return _read_file(url)
    if scheme not in {"http", "https"}:
        raise FeedError(f"feed URL must be http(s), not {scheme or 'relative'}")
    policy = Policy.from_settings(settings)
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url
    with _session(policy) as session:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if not parts.hostname:
                raise FeedError(f"{current} has no host")
            policy.check_name(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
            try:
                with session.get(
                    current, headers=headers, timeout=TIMEOUT, stream=True, allow_redirects=False
                ) as response:
                    if response.status_code in REDIRECTS:
                        current = _next_url(current, response.headers.get("Location"))
                        continue
                    return _answer(current, response)
            except requests.ConnectionError as exc:
                if _refused(exc):
                    raise FeedError(f"cannot fetch {current}: {_refused(exc)}") from None
                raise FeedError(f"cannot fetch {current}: {exc.__class__.__name__}") from None
            except requests.RequestException as exc:
                raise FeedError(f"cannot fetch {current}: {exc.__class__.__name__}") from None
    raise FeedError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _refused(exc: BaseException) -> str | None:
    """The AddressRefused message somewhere in a requests error's causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, AddressRefused):
            return str(exc)
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException):
                found = _refused(arg)
                if found:
                    return found
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    return None


def _answer(url: str, response: requests.Response) -> Fetched:
    headers = {name.lower(): value for name, value in response.headers.items()}
    if response.status_code == 304:
        return Fetched(None, headers, url)
    if response.status_code >= 400:
        raise FeedError(f"{url} answered HTTP {response.status_code}")
    body = bytearray()
    for chunk in response.iter_content(65536):
        body.extend(chunk)
        if len(body) > MAX_BYTES:
            raise FeedError(f"{url} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return Fetched(bytes(body), headers, url)
