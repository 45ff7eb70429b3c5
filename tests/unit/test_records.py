"""Provider records validate themselves, so malformed payloads fail with a message naming the field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from core.errors import PayloadError
from core.providers import Credentials, EntityRecord, MetricRecord


def test_metric_record_normalises_strings() -> None:
    r = MetricRecord(
        level="ad",
        entity_external_id=123,
        metrics_date="2026-11-01",
        spend="78.90",
        impressions="1234",
        clicks=56,
        conversions="3",
        revenue=Decimal("210.50"),
    )
    assert (r.entity_external_id, r.metrics_date, r.spend, r.impressions, r.clicks) == (
        "123",
        date(2026, 11, 1),
        Decimal("78.90"),
        1234,
        56,
    )
    assert r.conversions == Decimal(3) and r.revenue == Decimal("210.50")


def test_floats_do_not_lose_cents() -> None:
    assert MetricRecord(
        level="ad", entity_external_id="1", metrics_date=date(2026, 1, 1), spend=0.1
    ).spend == Decimal("0.1")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("impressions", "lots", "'impressions' must be a whole number, got 'lots'"),
        ("clicks", -1, "'clicks' must not be negative"),
        ("spend", "12,50", "'spend' must be a number"),
        ("spend", "NaN", "'spend' must be a finite number"),
        ("metrics_date", "yesterday", "'metrics_date' must be a date"),
        ("entity_external_id", None, "'entity_external_id' is missing"),
    ],
)
def test_malformed_values_raise_payload_error(field: str, value: object, message: str) -> None:
    kwargs: dict[str, object] = {
        "level": "ad",
        "entity_external_id": "1",
        "metrics_date": "2026-11-01",
        field: value,
    }
    with pytest.raises(PayloadError) as info:
        MetricRecord(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_entity_parent_needs_a_level() -> None:
    with pytest.raises(PayloadError, match="parent_level"):
        EntityRecord(level="ad", external_id="1", parent_external_id="9")


def test_credentials_never_show_tokens() -> None:
    creds = Credentials(access_token="EAAB-secret-token", refresh_token="1//refresh-secret")
    assert "secret" not in repr(creds) and "secret" not in str(creds)
