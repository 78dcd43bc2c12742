"""What the ESP adapters share: a pooled ``requests`` session, mapping of
HTTP status codes to the transport protocol, ``Retry-After`` parsing, the
endpoint override (``?endpoint=http://127.0.0.1:8025`` in a DSN, for tests
and for regional or proxy endpoints), and turning per-recipient values back
into substitution tags for the APIs that send one body to many recipients.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterable

import requests
from requests.adapters import HTTPAdapter

from newsletter import clock
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Accepted, Closing, Probe, SendResult, TransportError

USER_AGENT = "get-the-signal/0.1 (+https://github.com/)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` (seconds or an HTTP date) header."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


class HttpTransport(Closing):
    """Base of the ESP adapters: one keep-alive session, pool sized for the
    dispatcher's concurrency."""

    name = "http"
    max_batch = 100
    default_endpoint = ""

    def __init__(self, *, endpoint: str = "", timeout: float = 30.0, pool_size: int = 4):
        self.endpoint = (endpoint or self.default_endpoint).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(4, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT

    @staticmethod
    def common_options(dsn, settings) -> dict:
        return {
            "endpoint": dsn.options.get("endpoint", ""),
            "timeout": float(dsn.options.get("timeout", 30)),
            "pool_size": int(getattr(settings, "send_concurrency", 4) or 4),
        }

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send; raise ``TransportError`` for anything that judges no message:
        network errors, timeouts, 429 and 5xx (transient), 401/403 (fatal)."""
        try:
            response = self.session.request(method, self.endpoint + path, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise TransportError(f"{self.name}: timed out: {exc}") from exc
        except requests.RequestException as exc:
            raise TransportError(f"{self.name}: {exc}") from exc
        status = response.status_code
        if status == 429:
            raise TransportError(
                f"{self.name}: 429 rate limited: {_snippet(response)}", retry_after=self.retry_after(response)
            )
        if status >= 500:
            raise TransportError(
                f"{self.name}: {status} {_snippet(response)}", retry_after=self.retry_after(response)
            )
        if status in (401, 403):
            raise TransportError(
                f"{self.name}: {status} credentials refused: {_snippet(response)}", fatal=True
            )
        return response

    def retry_after(self, response: requests.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    def send(self, messages: list[OutgoingMessage], accepted: Accepted | None = None) -> list[SendResult]:
        results: list[SendResult] = []
        for start in range(0, len(messages), self.max_batch):
            part = messages[start : start + self.max_batch]
            answers = self.send_batch(part)
            if accepted is not None:
                for message, result in zip(part, answers, strict=True):
                    if result.ok:
                        accepted(message, result)
            results.extend(answers)
        return results

    def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.session.close()

    probe_path = ""  # the provider's cheapest authenticated GET

    def probe(self) -> Probe:
        """GET ``probe_path`` with the credentials: 2xx proves them (``judge``
        reads the answer); 401/403 is a refused key."""
        try:
            response = self.request("GET", self.probe_path)
        except TransportError as exc:
            return Probe("fail", str(exc))
        if not 200 <= response.status_code < 300:
            return Probe("fail", f"{self.name}: {response.status_code} {_snippet(response)}")
        try:
            answer = response.json()
        except ValueError:
            return Probe("fail", f"{self.name}: the answer to GET {self.probe_path} is not JSON")
        return self.judge(answer)

    def judge(self, answer) -> Probe:
        return Probe("pass", f"{self.name}: credentials accepted")


def _snippet(response: requests.Response) -> str:
    return " ".join(response.text[:300].split())


def whole_request_error(name: str, response: requests.Response) -> TransportError:
    """A 4xx that refuses the request as a whole (bad sender, malformed
    payload): no recipient is at fault and retrying will not help."""
    return TransportError(f"{name}: {response.status_code} {_snippet(response)}", fatal=True)


# --- one body, many recipients ---------------------------------------------------


class Group:
    """Messages that become identical once their merge fields are replaced by
    tags: one body (``subject``, ``text``, ``html``, ``headers`` with tags) and
    the members' own values."""

    __slots__ = ("subject", "text", "html", "headers", "sender", "members")

    def __init__(self, subject, text, html, headers, sender):
        self.subject, self.text, self.html, self.headers, self.sender = subject, text, html, headers, sender
        self.members: list[tuple[int, OutgoingMessage, dict[str, str]]] = []


def templatise(messages: Iterable[OutgoingMessage], tag: Callable[[str], str]) -> list[Group]:
    """Group messages by their content with every merge-field value replaced
    by ``tag(name)``. Replacing back must give each member's exact content
    (checked), so a collision — a tag already in the content, a value that
    overlaps another — only costs a smaller group, never a wrong message."""
    groups: dict[tuple, Group] = {}
    marker = tag("")[:4]  # every tag starts with it; content that contains it is sent on its own
    last: tuple | None = None  # (key, stripped parts) of the previous templated message
    for index, message in enumerate(messages):
        fields = {k: v for k, v in message.merge_fields.items() if v}
        names = sorted(fields, key=lambda k: len(fields[k]), reverse=True)
        header_names = sorted(message.headers)
        parts = (
            message.subject,
            message.text,
            message.html or "",
            *(message.headers[h] for h in header_names),
        )
        if last is not None and fields and len(last[1]) == len(parts):
            # Fast path: most messages of a batch share the previous one's template;
            # filling it with this message's values and comparing is one pass, not two.
            tags = {name: tag(name) for name in names}
            if tuple(_swap(p, names, tags, fields) for p in last[1]) == parts and not any(
                marker in p for p in parts
            ):
                groups[last[0]].members.append((index, message, fields))
                continue
        stripped = parts
        if fields and not any(marker in p for p in parts):
            tags = {name: tag(name) for name in names}
            candidate = tuple(_swap(p, names, fields, tags) for p in parts)
            if all(
                c is p or _swap(c, names, tags, fields) == p for c, p in zip(candidate, parts, strict=True)
            ):
                stripped = candidate
        if stripped is parts:
            fields = {}
        key = (message.sender, message.html is None, tuple(header_names), *stripped) if fields else (index,)
        group = groups.get(key)
        if group is None:
            headers = dict(zip(header_names, stripped[3:], strict=True))
            html = None if message.html is None else stripped[2]
            group = groups[key] = Group(stripped[0], stripped[1], html, headers, message.sender)
        group.members.append((index, message, fields))
        last = (key, stripped) if fields else None
    return list(groups.values())


def _swap(value: str, names: list[str], source: dict[str, str], target: dict[str, str]) -> str:
    """``value`` with each source value replaced by its target (the same
    object when nothing matched, which spares the check on the way back)."""
    result = value
    for name in names:
        if source[name] in result:
            result = result.replace(source[name], target[name])
    return result
