"""Settings read from ``NEWSLETTER_*`` environment variables (and ``.env``).

Everything is validated once, at start, so a typo in a cron expression or a
transport DSN stops the process with a clear message instead of failing at
08:00 on Monday when the issue should go out.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import warnings
from dataclasses import dataclass, field, fields, replace
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

from newsletter.dsn import parse_dsn

DEFAULT_INSTANCE = Path("instance")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """All runtime configuration. Field names map to ``NEWSLETTER_<NAME>``."""

    database_url: str = ""
    secret_key: str = ""
    base_url: str = "http://localhost:5000"
    mail_from: str = "GET THE SIGNAL <signal@localhost>"
    transport: str = "outbox://"
    schedule: str = "0 8 * * mon"
    timezone: str = "UTC"
    review_hours: int = 24
    auto_send: bool = False
    first_issue: int = 1
    feeds: tuple[str, ...] = ()
    bounce_mailbox: str = ""
    click_counts: str = "off"
    api_tokens: tuple[str, ...] = ()
    send_rate: float = 0.0
    send_concurrency: int = 4
    max_attempts: int = 5
    retry_base_seconds: int = 60
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: str = ""
    check_deliverability: bool = False
    local_time_delivery: bool = False  # the weekly slot's wall-clock time in each reader's zone
    # Beyond the contract: documented in docs/operating.md.
    env: str = "development"  # development | production | testing
    instance_path: str = str(DEFAULT_INSTANCE)
    list_id: str = ""  # defaults to "<slug>.<host of base_url>"
    postal_address: str = "GET THE SIGNAL, 1 Example Street, 00000 Example City"
    sections: tuple[str, ...] = ()  # tag slugs shown as sections, in order; empty = all tags by position
    section_limit: int = 5
    issue_limit: int = 30
    cors_origins: tuple[str, ...] = ()
    # origins that may frame /embed or load /embed.js; None = the CORS list (``allowed_embed_origins``)
    embed_origins: tuple[str, ...] | None = None
    store_ip: bool = False
    rate_limit_storage: str = "memory://"
    confirm_max_per_day: int = 3
    token_max_age_days: int = 7
    subscribe_rate_limit: str = "10/minute;50/hour"  # per client IP on the subscribe form and API
    api_rate_limit: str = "600/minute"  # per API token, across every token-protected endpoint
    misfire_grace_hours: int = 6
    scheduler_tick_seconds: float = 15.0  # how often the scheduler looks at the clock
    scheduler_lock_seconds: int = 30  # the lock's lease: a dead holder is replaced within this
    feed_poll_minutes: int = 30  # NEWSLETTER_FEEDS polling period
    bounce_poll_minutes: int = 10  # NEWSLETTER_BOUNCE_MAILBOX polling period
    retention_days: int = 365
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # redis://… or amqp://… for `newsletter worker`
    bounce_return_path: str = ""  # VERP: bounces+{token}@domain
    send_wave_recheck_seconds: float = 60.0  # an idle sender waiting for the next wave looks again after this
    send_lease_seconds: int = 120  # a dead sender's claimed rows return to the queue after this (delivery)
    # in-process sending: split NEWSLETTER_SEND_CONCURRENCY over N processes; 0 (unset):
    # one per core where the sender can fork (`issue send`), else 1 (delivery.deliver)
    send_processes: int = 0
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 30
    webhook_tolerance_seconds: int = 300  # signed webhook timestamps older/newer than this are refused
    webhook_max_bytes: int = 1048576  # larger webhook bodies are refused (413)
    editor_emails: tuple[str, ...] = ()  # who gets review mails; default: all editors
    dns_resolver: str = ""  # `doctor`'s DNS server(s), host[:port], comma-separated; default: the system's
    editor_idle_minutes: int = 60  # an editor's session ends after this long without a request
    editor_session_hours: int = 12  # … and this long after logging in, whatever happens
    trusted_proxies: int = 0  # reverse proxies in front that set X-Forwarded-For/-Proto (ProxyFix)
    feed_allow_hosts: tuple[str, ...] = ()  # feed hosts allowed to resolve to private addresses
    # Every other NEWSLETTER_* variable, by its lower-cased name without the
    # prefix: the provider secrets that each webhook module names for itself
    # (``feedback.webhooks.<provider>.SECRETS``), so a new provider needs no
    # change here.
    webhook_secrets: dict = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def allowed_embed_origins(self) -> tuple[str, ...]:
        """Who may frame or load the sign-up box: NEWSLETTER_EMBED_ORIGINS, else the CORS list."""
        return self.cors_origins if self.embed_origins is None else self.embed_origins

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property  # read for every message of a send
    def effective_list_id(self) -> str:
        if self.list_id:
            return self.list_id
        host = urlsplit(self.base_url).hostname or "localhost"
        return f"get-the-signal.{host}"


def served_at(settings: Settings, host: str, port: int, environ: dict[str, str] | None = None) -> Settings:
    """The settings for a server listening on ``host:port`` (``serve``, ``demo``).

    In development, links in mail and the printed editor login must lead to
    the server that is running, so an unset ``NEWSLETTER_BASE_URL`` follows
    the host and port served (``demo --port 5091`` mails links to port 5091).
    A base URL that was set — in the environment, ``.env`` or given in code —
    always wins, and production never guesses (its base URL is required to be
    https and is the public one, not the listening socket).
    """
    environ = os.environ if environ is None else environ
    default = next(f.default for f in fields(Settings) if f.name == "base_url")
    if settings.is_production or "NEWSLETTER_BASE_URL" in environ or settings.base_url != default:
        return settings
    shown = {"0.0.0.0": "localhost", "::": "localhost", "": "localhost"}.get(host, host)
    if ":" in shown:  # an IPv6 literal
        shown = f"[{shown}]"
    return replace(settings, base_url=f"http://{shown}:{port}")


def load_settings(environ: dict[str, str] | None = None, *, dotenv: bool = True, **overrides) -> Settings:
    """Build and validate Settings from the environment.

    ``overrides`` (used by tests and by ``demo``) win over the environment.
    """
    if environ is None:
        if dotenv:
            load_dotenv(".env", override=False)
        environ = dict(os.environ)
    values: dict = {}
    own = {f"NEWSLETTER_{f.name.upper()}" for f in fields(Settings)}
    for f in fields(Settings):
        if f.name == "webhook_secrets":
            continue
        raw = environ.get(f"NEWSLETTER_{f.name.upper()}")
        if raw is None:
            continue
        name = f"NEWSLETTER_{f.name.upper()}"
        kind = f.type
        if kind == "bool":
            values[f.name] = _bool(name, raw)
        elif f.name == "send_processes" and raw.strip().lower() == "auto":
            values[f.name] = os.cpu_count() or 1  # one sending process per core
        elif kind == "int":
            values[f.name] = _int(name, raw)
        elif kind == "float":
            values[f.name] = _float(name, raw)
        elif kind.startswith("tuple"):
            values[f.name] = _list(raw)
        else:
            values[f.name] = raw.strip()
    values["webhook_secrets"] = {
        key.removeprefix("NEWSLETTER_").lower(): value
        for key, value in environ.items()
        if key.startswith("NEWSLETTER_") and key not in own
    }
    values.update(overrides)
    settings = Settings(**values)
    return validate(settings)


def is_origin(value: str) -> bool:
    """True for a browser origin as it arrives in an ``Origin`` header: http(s),
    a host, an optional port, nothing else (a path or a slash would never match)."""
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and port_ok
        and not (parts.path or parts.query or parts.fragment or parts.username or parts.password)
        and value == f"{parts.scheme}://{parts.netloc}"
    )


def dns_server(item: str) -> tuple[str, int]:
    """(address, port) from "1.1.1.1", "127.0.0.1:5353", "[::1]:53" or "::1"."""
    text = item.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":")) if rest.removeprefix(":").isdigit() else -1
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        port = int(raw) if raw.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{item!r} is not an IP address with an optional port, such as 127.0.0.1:5353"
        ) from None
    if not 0 < port < 65536:
        raise ValueError(f"{item!r} has no valid port")
    return host, port


def _instance_dir(instance: Path) -> None:
    """``instance/`` (database, secret) made readable by its owner only."""
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_file(path: Path, content: str) -> str:
    """Write ``content`` to ``path`` readable by the owner only, unless the
    file exists; return what the file holds.

    The file never exists with other permissions or half written: the
    content goes to a temporary file created with mode 0600 (``O_EXCL``, so
    the umask cannot widen it), which is then hard-linked into place — an
    atomic step that fails if another process got there first, in which
    case that process's file is kept. An existing file readable by others is
    narrowed to 0600."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path.read_text().strip()


def _instance_secret(instance: Path) -> str:
    """A development secret kept in ``instance/`` so sessions survive restarts."""
    _instance_dir(instance)
    return private_file(instance / "secret_key", secrets.token_urlsafe(48))


def validate(settings: Settings) -> Settings:
    """Check every setting; fill development defaults; refuse unsafe production."""
    changes: dict = {}
    instance = Path(settings.instance_path)
    if settings.env not in {"development", "production", "testing"}:
        raise ConfigError("NEWSLETTER_ENV must be development, production or testing")
    if not settings.database_url:
        _instance_dir(instance)
        changes["database_url"] = f"sqlite:///{(instance / 'newsletter.db').resolve()}"
    if not settings.secret_key:
        if settings.is_production:
            raise ConfigError("NEWSLETTER_SECRET_KEY is required in production (a long random string)")
        changes["secret_key"] = _instance_secret(instance)
    elif settings.is_production and len(settings.secret_key) < 32:
        raise ConfigError("NEWSLETTER_SECRET_KEY must be at least 32 characters in production")

    base = urlsplit(settings.base_url)
    if base.scheme not in {"http", "https"} or not base.netloc:
        raise ConfigError(f"NEWSLETTER_BASE_URL must be an absolute http(s) URL, not {settings.base_url!r}")
    if settings.is_production and base.scheme != "https":
        raise ConfigError("NEWSLETTER_BASE_URL must use https in production (unsubscribe links travel in it)")
    if base.scheme != "https" and base.hostname not in {"localhost", "127.0.0.1", "::1"}:
        warnings.warn(
            f"NEWSLETTER_BASE_URL {settings.base_url} is not https: links in emails will be sent in clear",
            stacklevel=2,
        )
    changes["base_url"] = settings.base_url.rstrip("/")

    name, address = parseaddr(settings.mail_from)
    if "@" not in address or any(c in settings.mail_from for c in "\r\n"):
        raise ConfigError(f"NEWSLETTER_MAIL_FROM must look like 'Name <address>', not {settings.mail_from!r}")

    try:
        parse_dsn(settings.transport)  # the provider's own rules: ``delivery.transports.check_dsn`` at start
    except ValueError as exc:
        raise ConfigError(f"NEWSLETTER_TRANSPORT: {exc}") from None

    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"NEWSLETTER_TIMEZONE {settings.timezone!r} is not an IANA time zone") from None
    # The default is valid (tested): APScheduler loads only for an operator's value.
    if settings.schedule != Settings.schedule:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(settings.schedule, timezone=settings.timezone)
        except ValueError as exc:
            raise ConfigError(
                f"NEWSLETTER_SCHEDULE {settings.schedule!r} is not a 5-field cron expression: {exc}"
            ) from None

    for variable, origins in (
        ("CORS_ORIGINS", settings.cors_origins),
        ("EMBED_ORIGINS", settings.embed_origins),
    ):
        for origin in origins or ():
            if not is_origin(origin):
                raise ConfigError(
                    f"NEWSLETTER_{variable}: {origin!r} is not an origin: scheme, host and optional port, "
                    "such as https://blog.example.org (no path, no trailing slash)"
                )

    if settings.click_counts not in {"off", "aggregate"}:
        raise ConfigError("NEWSLETTER_CLICK_COUNTS must be 'aggregate' or 'off'")
    for name in ("subscribe_rate_limit", "api_rate_limit"):
        value = getattr(settings, name)
        if value == getattr(Settings, name):  # valid (tested): limits loads only for another value
            continue
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(
                f"NEWSLETTER_{name.upper()} {value!r} is not a rate limit like {getattr(Settings, name)!r}"
            ) from None
    if settings.send_concurrency < 1:
        raise ConfigError("NEWSLETTER_SEND_CONCURRENCY must be at least 1")
    if settings.send_processes < 0:
        raise ConfigError(
            "NEWSLETTER_SEND_PROCESSES must be auto, a number of processes, or 0 for the default"
        )
    if settings.max_attempts < 1:
        raise ConfigError("NEWSLETTER_MAX_ATTEMPTS must be at least 1")
    for feed in settings.feeds:
        if urlsplit(feed).scheme not in {"http", "https"}:
            raise ConfigError(
                f"NEWSLETTER_FEEDS: {feed!r} is not an http(s) URL "
                "(files are read only by `newsletter articles import --feed FILE_URL --allow-file`)"
            )
    if settings.editor_idle_minutes < 1 or settings.editor_session_hours < 1:
        raise ConfigError(
            "NEWSLETTER_EDITOR_IDLE_MINUTES and NEWSLETTER_EDITOR_SESSION_HOURS must be at least 1"
        )
    if settings.bounce_mailbox and urlsplit(settings.bounce_mailbox).scheme not in {"imap", "imaps"}:
        raise ConfigError(
            "NEWSLETTER_BOUNCE_MAILBOX must be imaps://user:pass@host/INBOX (or imap:// for local tests)"
        )
    if settings.bounce_return_path and (
        "{token}" not in settings.bounce_return_path
        or "@" not in settings.bounce_return_path.split("{token}")[-1]
    ):
        raise ConfigError("NEWSLETTER_BOUNCE_RETURN_PATH must look like bounces+{token}@example.org")
    for server in _list(settings.dns_resolver):
        try:
            dns_server(server)
        except ValueError as exc:
            raise ConfigError(f"NEWSLETTER_DNS_RESOLVER: {exc}") from None
    dkim = [settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file]
    if any(dkim) and not all(dkim):
        raise ConfigError(
            "DKIM needs all three: NEWSLETTER_DKIM_DOMAIN, NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_KEY_FILE"
        )
    if settings.dkim_key_file and not Path(settings.dkim_key_file).is_file():
        raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE {settings.dkim_key_file!r} does not exist")
    return replace(settings, **changes)
