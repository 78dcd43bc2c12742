"""Transports by DSN scheme, one module per provider (Symfony Mailer style).

A provider module is named after its scheme (``smtp``, ``smtps``,
``postmark`` …) and declares ``check_dsn(dsn)`` (its rules: ValueError with
an example when the DSN cannot work) and ``from_dsn(dsn, settings)``. It is
found by its name and imported only when that scheme is used, so adding a
provider is adding a module. ``base`` (the protocol) and ``http`` (what the
ESP adapters share) are not providers.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType

from newsletter.delivery.transports.base import Probe, SendResult, Transport, TransportError
from newsletter.dsn import Dsn, parse_dsn

__all__ = ["Probe", "SendResult", "Transport", "TransportError", "check_dsn", "make_transport", "schemes"]

_NOT_PROVIDERS = {"base", "http"}


@lru_cache(maxsize=1)
def schemes() -> tuple[str, ...]:
    """The schemes of the provider modules in this package (none is imported)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_PROVIDERS))


def _provider(dsn: Dsn) -> ModuleType:
    if dsn.scheme not in schemes():
        raise ValueError(f"unknown transport {dsn.scheme!r}; use one of {', '.join(schemes())}")
    return importlib.import_module(f"{__name__}.{dsn.scheme}")


def check_dsn(raw: str) -> Dsn:
    """Parse ``raw`` and apply its provider's rules; ValueError says what is wrong."""
    dsn = parse_dsn(raw)
    _provider(dsn).check_dsn(dsn)
    return dsn


def make_transport(raw: str, settings=None) -> Transport:
    """Build the transport named by ``raw``. ``settings`` carries shared
    options (concurrency, DKIM) the transports may use."""
    dsn = check_dsn(raw)
    return _provider(dsn).from_dsn(dsn, settings)
