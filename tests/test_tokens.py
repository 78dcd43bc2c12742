"""Signed link tokens: the fast maker gives exactly itsdangerous' Signer
output, reads back, and keeps purposes and secrets apart."""

from __future__ import annotations

import pytest
from itsdangerous import Signer

from newsletter import tokens

SECRET = "s" * 40


@pytest.mark.parametrize("purpose", tokens.PURPOSES)
@pytest.mark.parametrize("value", [1, 42, 10**12, "7:https://example.org/ä?x=1", ""])
def test_fast_tokens_are_itsdangerous_signer_tokens_byte_for_byte(purpose, value):
    signer = Signer(SECRET, salt=f"signal.{purpose}", digest_method=tokens._sha256, key_derivation="hmac")
    made = tokens.make_token(SECRET, purpose, value)
    assert made == signer.sign(str(value)).decode("utf-8")
    assert tokens.read_token(SECRET, purpose, made) == str(value)


def test_a_token_of_one_purpose_or_secret_is_refused_by_another():
    token = tokens.make_token(SECRET, "unsubscribe", 5)
    with pytest.raises(tokens.TokenError):
        tokens.read_token(SECRET, "preferences", token)
    with pytest.raises(tokens.TokenError):
        tokens.read_token("t" * 40, "unsubscribe", token)
    with pytest.raises(tokens.TokenError):
        tokens.read_token(SECRET, "unsubscribe", token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(ValueError):
        tokens.make_token(SECRET, "nonsense", 5)
