"""Tokens at rest: MultiFernet, the first key encrypts, older keys still decrypt, rotation re-encrypts."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from core.config import Settings
from core.crypto import decrypt, encrypt, get_cipher, rotate
from core.errors import ConfigError


def cipher(*keys: str) -> object:
    return get_cipher(Settings(encryption_keys=",".join(keys)))  # type: ignore[arg-type]


def test_old_keys_decrypt_and_rotation_moves_to_the_new_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = encrypt("EAAB-token", cipher(old))  # type: ignore[arg-type]
    assert stored is not None and b"EAAB-token" not in stored
    both = cipher(new, old)
    assert decrypt(stored, both) == "EAAB-token"  # type: ignore[arg-type]
    rotated = rotate(stored, both)  # type: ignore[arg-type]
    assert decrypt(rotated, cipher(new)) == "EAAB-token"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        decrypt(stored, cipher(new))  # type: ignore[arg-type]


def test_bad_key_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="Fernet keys"):
        cipher("not-a-key")
