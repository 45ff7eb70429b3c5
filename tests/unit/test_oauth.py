"""The connect flow's pieces that need no platform: PKCE, account id normal forms, the state's signature."""

from __future__ import annotations

import base64
import hashlib

import pytest

from core.oauth import ConnectError, granted, normalize_account_id, pkce_pair
from core.providers import Credentials
from core.services.connect import _new_state, _signed


def test_pkce_challenge_is_the_s256_of_its_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128 and set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest and pkce_pair()[0] != verifier


def test_a_state_is_signed_and_a_changed_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    from core.config import get_settings

    monkeypatch.setenv("METRICX_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    get_settings.cache_clear()
    state = _new_state()
    nonce, _, signature = state.partition(".")
    assert _signed(state) and state != _new_state()
    # a changed first character (the last one of unpadded base64 may carry only padding bits, and
    # may already be the character put in)
    changed = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert not _signed(f"{nonce}x.{signature}") and not _signed(f"{nonce}.{changed}")
    assert not _signed(nonce) and not _signed("")
    monkeypatch.setenv("METRICX_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    get_settings.cache_clear()
    assert not _signed(state)  # signed with another server's key
    monkeypatch.undo()
    get_settings.cache_clear()


def test_account_ids_keep_their_form_without_a_provider_rule() -> None:
    class Meta:
        def normalize_account_id(self, raw: str) -> str:
            return raw.removeprefix("act_")

    assert normalize_account_id(Meta(), " act_1001 ") == "1001"
    assert normalize_account_id(object(), " Acct-7 ") == "Acct-7"
    assert normalize_account_id(None, "x") == "x"


def test_a_missing_scope_is_named() -> None:
    granted(Credentials(scopes=("ads_read", "email")), ["ads_read"])
    with pytest.raises(ConnectError) as missing:
        granted(Credentials(scopes=("email",)), ["ads_read"])
    assert missing.value.code == "insufficient_scope" and "ads_read" in missing.value.message
