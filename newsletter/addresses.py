"""Address and name validation: the one check every way in uses (form, API,
CSV import, editor, test sends).

Addresses are normalised with email-validator and lower-cased, so one person
is one row and the suppression hash always matches; a name must be safe in
a From/To header (no line breaks, no control characters).
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS_LENGTH = 320
MAX_NAME_LENGTH = 200


class InvalidInput(ValueError):
    """Bad input for one field; ``field`` names it for inline errors."""

    field = "input"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        if field:
            self.field = field


class InvalidAddress(InvalidInput):
    field = "email"


def normalise_email(raw, settings) -> str:
    """The canonical form of an address, or ``InvalidAddress`` saying why not."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidAddress("Enter your email address.")
    value = raw.strip()
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("This email address is too long.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidAddress("An email address cannot contain line breaks or control characters.")
    try:
        result = validate_email(
            value, check_deliverability=settings.check_deliverability, allow_smtputf8=True
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(f"This is not a valid email address: {exc}") from None
    return result.normalized.lower()


def clean_name(raw) -> str:
    """A display name safe for a From/To header: no line breaks, no control characters."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("Your name must be text.", "name")
    value = raw.strip()
    if any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029" for c in value):
        raise InvalidInput("Your name cannot contain line breaks or control characters.", "name")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"Your name can be at most {MAX_NAME_LENGTH} characters.", "name")
    return value


# Anything with an @ between two non-space runs: wider than a valid address
# on purpose (bounce texts quote addresses in <>, with quotes, encoded, …).
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
HIDDEN = "[address hidden]"


def hide_addresses(text: str | None) -> str:
    """``text`` with everything that looks like an address replaced (for
    people who may not see readers' addresses: the ``editor`` role)."""
    return _ADDRESS_LIKE.sub(HIDDEN, text or "")
