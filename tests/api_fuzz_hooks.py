"""Schemathesis hooks for the API fuzz run (tests/test_api_fuzz.py): what the
``email`` format means for this API. The document says ``format: email``;
the server takes the addresses email-validator accepts (no special-use
domains such as .test or .local, no quoted local parts), so generated
"valid" addresses are drawn from that set. Refusals of other addresses are
checked by the negative phase and by tests/test_readers_hostile.py."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

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
