"""Every recorded Google Ads answer in plugins/google/fixtures/ names its public source, the client
parses it, each failure maps to the documented core error, and the simulator answers in the same shape."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures import all_names, load
from metricx_google.client import GoogleAdsAPI, decode
from metricx_google.reports import LEVELS, entity_record, external_id, metric_record

import core
from core import ConfigError

ERRORS = [n for n in all_names() if n.startswith("error_")]
SUCCESSES = [n for n in all_names() if n.startswith("success_")]


@pytest.mark.parametrize("name", all_names())
def test_every_fixture_names_its_public_source(name: str) -> None:
    source = load(name).source
    assert "https://" in source, f"{name}: _source must name the public page or repository it comes from"


@pytest.mark.parametrize("name", ERRORS)
def test_each_failure_maps_to_its_documented_error(name: str) -> None:
    fixture = load(name)
    want = fixture.maps_to
    kind = want["error"] if isinstance(want, dict) else "ConfigError"
    stream = name.startswith("error_stream")
    error = GoogleAdsAPI("1234567890", stream=stream, version="v26").classify(fixture.response())
    assert error is not None, name
    assert type(error).__name__ == kind, (name, error)
    assert isinstance(error, getattr(core, kind))
    if isinstance(want, dict):
        if "message_contains" in want:
            assert want["message_contains"].lower() in error.message.lower(), error.message
        if "scope" in want:
            assert error.scope == want["scope"]  # type: ignore[attr-defined]
        if "retry_after_s" in want:
            assert error.retry_after_s == want["retry_after_s"]  # type: ignore[attr-defined]
        if "min_retry_after_s" in want:
            assert error.retry_after_s >= want["min_retry_after_s"]  # type: ignore[attr-defined]
    # Account problems are not token problems: no "reconnect" for them.
    if isinstance(error, ConfigError):
        assert "reconnect" not in error.message.lower()


@pytest.mark.parametrize("name", SUCCESSES)
def test_the_client_parses_each_success_fixture(name: str) -> None:
    fixture = load(name)
    payload = decode(fixture.response(), stream=isinstance(fixture.body, list))
    assert GoogleAdsAPI("1234567890", stream=isinstance(payload, list)).classify(fixture.response()) is None
    rows = _rows(payload)
    level = fixture.meta.get("_level")
    if level in LEVELS and fixture.meta.get("_kind") == "entities":
        records = [entity_record(level, r) for r in rows]
        assert records and all(r.level == level for r in records)
    elif level in LEVELS:
        records = [metric_record(level, r, "USD") for r in rows]
        assert records and all(r.metrics_date for r in records)
        keys = [(external_id(level, r), r["segments"]["date"]) for r in rows]
        assert len(set(keys)) == len(keys), "each (entity, day) once"


def _rows(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return [row for batch in payload for row in batch.get("results", [])]
    if isinstance(payload, dict):
        return list(payload.get("results", []))
    return []
