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
    from core.ratelimit import AccountLimiter
    from core.scheduler import LAST_TICKS_PREFIX, LEASE_PREFIX

    assert (LEASE_PREFIX, LAST_TICKS_PREFIX) == (
        keys.SCHEDULER_LEASE_PREFIX,
        keys.SCHEDULER_LAST_TICKS_PREFIX,
    )
    assert AccountLimiter(None, "meta", "act_1").key == "metricx:rl:meta:act_1"  # type: ignore[arg-type]
