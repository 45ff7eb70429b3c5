"""Typed sync state: the status enums' derived sets and the sync job id format."""

from __future__ import annotations

import uuid

import pytest

from core.providers import SyncMode
from core.state import (
    BUSY,
    FINISHED_RUN,
    NEEDS_ATTENTION,
    SETTLED,
    TERMINAL_RUN,
    ConnectionStatus,
    RunStatus,
    SyncJobId,
    SyncStatus,
)


def test_statuses_are_the_stored_strings() -> None:
    assert [s.value for s in SyncStatus] == [
        "idle",
        "queued",
        "syncing",
        "error",
        "rate_limited",
        "reconnect_required",
    ]
    assert {s.value for s in RunStatus} == {
        *("running", "complete", "failed", "retrying", "deferred"),
        *("abandoned", "waiting", "waited", "merged"),
    }
    assert {s.value for s in ConnectionStatus} == {"active", "paused", "disconnected"}
    assert SyncStatus.queued == "queued" and f"{RunStatus.deferred}" == "deferred"


def test_derived_sync_status_sets_partition_the_statuses() -> None:
    assert BUSY == {SyncStatus.queued, SyncStatus.syncing}
    assert NEEDS_ATTENTION == {SyncStatus.error, SyncStatus.rate_limited, SyncStatus.reconnect_required}
    assert SETTLED == set(SyncStatus) - BUSY
    assert SyncStatus.idle in SETTLED and SyncStatus.idle not in NEEDS_ATTENTION
    assert not BUSY & NEEDS_ATTENTION


def test_derived_run_status_sets() -> None:
    assert TERMINAL_RUN == {RunStatus.complete, RunStatus.failed, RunStatus.deferred, RunStatus.merged}
    # a killed try is over, and so is a wait; their job is not (it retries, or runs its tries)
    assert {RunStatus.abandoned, RunStatus.waited} <= FINISHED_RUN - TERMINAL_RUN
    assert RunStatus.waiting not in FINISHED_RUN | TERMINAL_RUN
    # a retrying try is over, but its job is not: arq runs another try
    assert RunStatus.retrying in FINISHED_RUN and RunStatus.retrying not in TERMINAL_RUN
    assert RunStatus.running not in FINISHED_RUN | TERMINAL_RUN


@pytest.mark.parametrize("slot", ["202612020015", "1767225600000", "cron:scheduled_realtime_sync:1"])
@pytest.mark.parametrize("mode", list(SyncMode))
def test_sync_job_id_round_trips(mode: SyncMode, slot: str) -> None:
    conn = str(uuid.uuid4())
    job = SyncJobId(conn, mode.value, slot)
    text = job.format()
    assert text == f"sync:{conn}:{mode.value}:{slot}" == str(job)
    assert SyncJobId.parse(text) == job


def test_new_sync_job_ids_are_unique_per_request_and_stable_per_slot() -> None:
    conn = uuid.uuid4()
    assert SyncJobId.new(conn, "realtime", "202612020015") == SyncJobId.new(conn, "realtime", "202612020015")
    fresh = SyncJobId.new(conn, SyncMode.backfill)
    assert fresh.connection_id == str(conn) and fresh.mode == "backfill" and fresh.slot.isdigit()


@pytest.mark.parametrize(
    "other",
    ["", None, "sync", "sync:abc", "sync:abc:realtime", "cron:x:y:z", "shopify:abc:123", "sync::realtime:1"],
)
def test_other_ids_do_not_parse_as_sync_jobs(other: str | None) -> None:
    assert SyncJobId.parse(other) is None


def test_sql_form_compiles_to_the_same_pieces() -> None:
    from sqlalchemy import literal_column
    from sqlalchemy.dialects import postgresql

    expression = SyncJobId.sql(
        literal_column("connections.id"), SyncJobId.tail("attribution", "202612020300")
    )
    sql = str(expression.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert sql == "concat('sync:', connections.id, ':attribution:202612020300')"
