"""Alert signatures and which webhook URLs are accepted."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from core.alerts import sign, verify
from core.alerts.urls import WebhookUrlRejected, check_webhook_url


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"type":"connection.error"}'
    header = sign("whsec_k", body, timestamp=1_700_000_000)
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_k", header, body, now=1_700_000_010)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("whsec_other", b'{"type":"connection.error"}', 1_700_000_010),  # wrong secret
        ("whsec_k", b'{"type":"connection.recovered"}', 1_700_000_010),  # body changed
        ("whsec_k", b'{"type":"connection.error"}', 1_700_000_000 + 301),  # replayed too late
    ],
)
def test_verify_rejects_forgeries_and_replays(secret: str, body: bytes, now: int) -> None:
    header = sign("whsec_k", b'{"type":"connection.error"}', timestamp=1_700_000_000)
    assert not verify(secret, header, body, now=now)


def test_verify_rejects_malformed_headers() -> None:
    assert not verify("whsec_k", "garbage", b"{}")
    assert not verify("whsec_k", "t=abc,v1=00", b"{}")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/x", "private or loopback"),
        ("https://10.1.2.3/x", "private or loopback"),
        ("https://169.254.169.254/latest", "private or loopback"),  # cloud metadata
        ("https://[::1]/x", "private or loopback"),
        ("https://[::ffff:192.168.0.1]/x", "private or loopback"),
        ("https://localhost/x", "private or loopback"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("ftp://hooks.example.com/x", "http(s)"),
    ],
)
async def test_production_rejects_insecure_and_internal_urls(url: str, why: str) -> None:
    with pytest.raises(WebhookUrlRejected) as caught:
        await check_webhook_url(url, allow_private=False)
    assert why in caught.value.message


async def test_a_public_https_address_is_accepted_and_the_setting_allows_loopback() -> None:
    await check_webhook_url("https://93.184.215.14/hook", allow_private=False)
    await check_webhook_url("http://127.0.0.1:8080/hook", allow_private=True)


def test_signing_secrets_never_reach_the_logs() -> None:
    from core.alerts.webhooks import SECRET_PREFIX
    from core.logging import redact_text

    assert redact_text(f"created {SECRET_PREFIX}Abc-123_xyz ok") == f"created {SECRET_PREFIX}[REDACTED] ok"
