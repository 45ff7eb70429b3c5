"""Token encryption at rest: MultiFernet, the first key encrypts and every key decrypts."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.config import Settings, get_settings
from core.errors import ConfigError

log = structlog.get_logger(__name__)


def _dev_key(data_dir: Path) -> str:
    """The demo's own key under its data dir (``metricx demo`` only: every other process needs the
    operator's ``METRICX_ENCRYPTION_KEYS``, so no process writes a key of its own into the cwd)."""
    path = data_dir / "encryption.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
        log.warning(
            "encryption_key_generated", path=str(path), hint="set METRICX_ENCRYPTION_KEYS in production"
        )
    return path.read_text().strip()


def _keys(settings: Settings) -> list[str]:
    raw = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ConfigError(
            "METRICX_ENCRYPTION_KEYS is not set: generate a key with `metricx keys generate` and give "
            "the same value to the API, worker, scheduler and CLI (`metricx demo` makes its own)"
        )
    return keys


def get_cipher(settings: Settings | None = None) -> MultiFernet:
    """The MultiFernet built from ``METRICX_ENCRYPTION_KEYS`` (:class:`ConfigError` when unset)."""
    keys = _keys(settings or get_settings())
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise ConfigError(
            "METRICX_ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(generate one with `metricx keys generate`)"
        ) from None


def encrypt(value: str | None, cipher: MultiFernet | None = None) -> bytes | None:
    if value is None:
        return None
    return (cipher or get_cipher()).encrypt(value.encode())


def decrypt(token: bytes | None, cipher: MultiFernet | None = None) -> str | None:
    if token is None:
        return None
    try:
        return (cipher or get_cipher()).decrypt(bytes(token)).decode()
    except InvalidToken:
        raise ConfigError(
            "a stored credential cannot be decrypted with the configured keys; "
            "keep the old key in METRICX_ENCRYPTION_KEYS until `metricx keys rotate` has run"
        ) from None


def rotate(token: bytes | None, cipher: MultiFernet | None = None) -> bytes | None:
    """Re-encrypt ``token`` under the current (first) key."""
    if token is None:
        return None
    try:
        return (cipher or get_cipher()).rotate(bytes(token))
    except InvalidToken:
        raise ConfigError(
            "a stored credential cannot be decrypted with any key in METRICX_ENCRYPTION_KEYS: put the "
            "key it was encrypted with back in the list (after the new one), then run `metricx keys rotate`"
        ) from None


def keyed_digest(value: str, *, purpose: str, settings: Settings | None = None) -> str:
    """A short HMAC-SHA256 of ``value`` keyed with the primary encryption key (hex, 32 chars).

    Names a secret (a token, a developer token) in Redis keys and columns without storing
    it: the digest cannot be reversed or recomputed without the key. ``purpose`` separates
    uses so one digest never matches another's.
    """
    keys = _keys(settings or get_settings())
    mac = hmac.new(keys[0].encode(), f"{purpose}\x00{value}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]
