"""WorkerSettings as arq sees it: a flat class whose every setting reaches get_kwargs."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _kwargs_in_clean_process() -> dict[str, object]:
    code = """
import json, msgpack
from arq.worker import get_kwargs
from core.worker import WorkerSettings
k = get_kwargs(WorkerSettings)
names = ("max_jobs", "job_timeout", "keep_result", "retry_jobs", "max_tries", "queue_name", "cron_jobs",
         "health_check_interval")
out = {n: k.get(n) for n in names}
out["functions"] = sorted(f.name for f in k["functions"])
out["serializer_is_msgpack"] = msgpack.unpackb(k["job_serializer"]({"a": 1})) == {"a": 1}
out["hooks"] = [n for n in ("on_startup", "on_shutdown", "on_job_start", "on_job_end") if callable(k.get(n))]
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICX_") and k not in ("REDIS_URL",)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_get_kwargs_keeps_every_seed_setting() -> None:
    k = _kwargs_in_clean_process()
    assert k["max_jobs"] == 10
    assert k["job_timeout"] == 600
    assert k["keep_result"] == 3600
    assert k["retry_jobs"] is True
    assert k["max_tries"] == 3
    assert k["queue_name"] == "arq:queue"
    assert k["cron_jobs"] == []  # the scheduler enqueues cron work, never the workers
    assert k["serializer_is_msgpack"] is True  # not pickle
    assert k["hooks"] == ["on_startup", "on_shutdown", "on_job_start", "on_job_end"]
    assert k["health_check_interval"] == 30
    for name in (
        "process_sync_job",
        "scheduled_realtime_sync",
        "scheduled_attribution_sync",
        "scheduled_compaction",
    ):
        assert name in k["functions"]


def test_worker_settings_is_one_flat_class() -> None:
    from core.worker import WorkerSettings

    assert WorkerSettings.__bases__ == (object,)
