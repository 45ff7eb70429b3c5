"""Redis key names: one module, the same strings as before, arq's own constants."""

from __future__ import annotations

import arq.constants

from core import keys


def test_key_strings_are_unchanged() -> None:
    assert keys.active_sync("c1") == "metricx:sync:active:c1"
    assert keys.connection_lock("c1") == "metricx:lock:connection:c1"
    assert keys.fanout_slot("realtime", "202612020015") == "metricx:fanout:slot:realtime:202612020015"
    assert keys.fanout_passes("attribution", "1") == "metricx:fanout:passes:attribution:1"
    assert keys.RATE_LIMIT_PREFIX == "metricx:rl"
    assert keys.SCHEDULER_LEASE_PREFIX == "metricx:scheduler:lease:"
    assert keys.SCHEDULER_LAST_TICKS_PREFIX == "metricx:scheduler:last:"


def test_arq_keys_and_expiry_come_from_arq() -> None:
    assert keys.arq_job("j") == arq.constants.job_key_prefix + "j"
    assert keys.arq_result("j") == arq.constants.result_key_prefix + "j"
    assert keys.arq_in_progress("j") == arq.constants.in_progress_key_prefix + "j"
    assert keys.expires_extra_ms is arq.constants.expires_extra_ms


def test_users_of_keys_take_them_from_the_keys_module() -> None:
    from core.scheduler import LAST_TICKS_PREFIX, LEASE_PREFIX

    assert (LEASE_PREFIX, LAST_TICKS_PREFIX) == (
        keys.SCHEDULER_LEASE_PREFIX,
        keys.SCHEDULER_LAST_TICKS_PREFIX,
    )


def test_no_other_core_module_spells_a_redis_key() -> None:
    import ast
    import re
    from pathlib import Path

    root = Path(keys.__file__).parent
    # The conformance kit's throwaway per-test limiter prefix; its ProviderContext construction is
    # being replaced by the shared provider-context builder (issue 12, ProviderHTTP).
    pending = {"testing/conformance.py"}
    key = re.compile(r"^metricx:[a-z]")
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative == "keys.py" or relative in pending:
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and key.match(node.value):
                found.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert found == []


def test_one_module_writes_arqs_job_keys() -> None:
    from pathlib import Path

    root = Path(keys.__file__).parent
    writers = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.py") if "PSETEX" in p.read_text().upper()
    )
    assert writers == ["enqueue.py"]
