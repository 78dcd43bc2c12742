"""Schemathesis hooks for the API fuzz run (tests/test_api_fuzz.py): what the
``email`` format means for this API, and unique Idempotency-Keys. The document says ``format: email``;
the server takes the addresses email-validator accepts (no special-use
domains such as .test or .local, no quoted local parts), so generated
"valid" addresses are drawn from that set. Refusals of other addresses are
checked by the negative phase and by tests/test_readers_hostile.py."""

from __future__ import annotations

import uuid

import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

_LOCAL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9+_-]{0,18}[a-z0-9])?\Z")
_DOMAIN = st.from_regex(r"\A[a-z](?:[a-z0-9-]{0,14}[a-z0-9])?\Z")
schemathesis.openapi.format(
    "email",
    st.builds(
        lambda local, domain, tld: f"{local}@{domain}.{tld}",
        _LOCAL,
        _DOMAIN,
        st.sampled_from(["org", "com", "net", "io"]),
    ),
)


@schemathesis.hook
def before_call(context, case, **kwargs):
    """An Idempotency-Key names one intended action: a client makes a new one
    per action. The fuzzer draws short random keys ("0", "A") that collide
    across different requests, which the API rightly refuses (409) or answers
    with the first request's stored response (an id deleted since). A valid
    key is made unique; an invalid one (the negative phase) is left as drawn."""
    key = (case.headers or {}).get("Idempotency-Key")
    negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    if key is not None and not negative:
        case.headers["Idempotency-Key"] = f"{key[:150]}-{uuid.uuid4().hex}"
