"""Sync lifecycle hooks reach plugins through pluggy: narrow implementations get only what they declare.

A listener plugin is registered in the worker's live plugin manager for the test, and a real sync
(the test provider against its HTTP simulator, through arq) calls it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from core import hookimpl
from core.config import Settings
from core.enqueue import enqueue_sync_job
from core.logging import configure_logging
from core.plugins import get_registry
from tests.conftest import fetch_one


class _Narrow:
    """Declares fewer parameters than each spec, as core/HOOKS.md allows."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def on_sync_started(self, connection_id: str) -> None:
        self.calls.append(("started", {"connection_id": connection_id}))

    @hookimpl
    def on_sync_finished(self, connection_id: str, stats: dict[str, Any]) -> None:
        self.calls.append(("finished", {"connection_id": connection_id, "stats": stats}))

    @hookimpl
    def on_sync_failed(self, connection_id: str, error_kind: str) -> None:
        self.calls.append(("failed", {"connection_id": connection_id, "error_kind": error_kind}))


class _Broken:
    @hookimpl
    def on_sync_finished(self, job_id: str) -> None:
        raise RuntimeError(f"listener bug while handling {job_id}")


@pytest.fixture
def listeners(metricx_env: Any) -> Iterator[tuple[_Narrow, _Broken]]:
    # After metricx_env, which resets the process registry the worker then uses.
    pm = get_registry().pm
    assert pm is not None
    narrow, broken = _Narrow(), _Broken()
    # The broken one is registered last, so pluggy (LIFO) calls it first: it must not stop the other.
    pm.register(narrow, name="narrow_listener")
    pm.register(broken, name="broken_listener")
    try:
        yield narrow, broken
    finally:
        pm.unregister(name="narrow_listener")
        pm.unregister(name="broken_listener")


async def test_a_real_sync_calls_narrow_started_and_finished_hooks(
    listeners: tuple[_Narrow, _Broken],
    make_connection: Any,
    run_worker: Any,
    redis_client: Any,
    capsys: Any,
) -> None:
    narrow, _ = listeners
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    configure_logging(Settings(log_format="json"), force=True)
    try:
        await run_worker()
        lines = capsys.readouterr().err.splitlines()
    finally:
        configure_logging(Settings(), force=True)
    logs = [json.loads(line) for line in lines if line.startswith("{")]
    row = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    assert row.sync_status == "idle"  # the broken listener did not break the sync
    assert [kind for kind, _ in narrow.calls] == ["started", "finished"]
    finished = narrow.calls[1][1]
    assert finished["connection_id"] == str(conn)
    assert finished["stats"]["rows"] == 12 and finished["stats"]["entities"] == 8
    failures = [e for e in logs if e["event"] == "plugin_hook_failed"]
    assert len(failures) == 1
    assert failures[0]["plugin"] == "broken_listener" and failures[0]["hook"] == "on_sync_finished"
    assert failures[0]["error_type"] == "RuntimeError" and "listener bug" in failures[0]["error"]


async def test_a_failed_sync_calls_a_narrow_failed_hook(
    listeners: tuple[_Narrow, _Broken], make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    narrow, _ = listeners
    ws, conn = await make_connection(token="expired-token")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert narrow.calls == [
        ("started", {"connection_id": str(conn)}),
        ("failed", {"connection_id": str(conn), "error_kind": "auth"}),
    ]


def test_notify_passes_each_implementation_only_its_declared_arguments(
    listeners: tuple[_Narrow, _Broken],
) -> None:
    narrow, _ = listeners
    event = {"connection_id": "c1", "workspace_id": "w1", "provider": "p", "mode": "realtime", "job_id": "j"}
    registry = get_registry()
    registry.notify("on_sync_started", **event)
    registry.notify("on_sync_finished", **event, stats={"rows": 3})
    registry.notify("on_sync_failed", **event, error_kind="config", message="bad setting")
    assert narrow.calls == [
        ("started", {"connection_id": "c1"}),
        ("finished", {"connection_id": "c1", "stats": {"rows": 3}}),
        ("failed", {"connection_id": "c1", "error_kind": "config"}),
    ]
