"""Provider records validate themselves, so malformed payloads fail with a message naming the field."""

from __future__ import annotations

import json
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


def test_extra_metrics_are_exact_numbers_stored_as_json() -> None:
    record = MetricRecord("ad", "1", "2026-11-01", extra={"clicks_all": "812", "video_p25": 0.1})
    assert record.extra == {"clicks_all": Decimal(812), "video_p25": Decimal("0.1")}
    assert json.loads(record.extra_json() or "", parse_float=Decimal) == {
        "clicks_all": 812,
        "video_p25": Decimal("0.1"),
    }
    assert MetricRecord("ad", "1", "2026-11-01").extra_json() is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Clicks All": 1}, "invalid metric name"),
        ({"clicks_all": "NaN"}, "finite"),
        ({"clicks_all": "many"}, "must be a number"),
        ({f"m{i}": 1 for i in range(17)}, "at most 16"),
    ],
)
def test_malformed_extra_metrics_raise_payload_error(extra: dict[str, object], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        MetricRecord("ad", "1", "2026-11-01", extra=extra)
