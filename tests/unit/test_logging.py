"""Secrets never reach the logs, whoever logs them; the seed's markers are a `component` field."""

from __future__ import annotations

import json
import logging
from typing import Any

import structlog

from core.config import Settings
from core.logging import configure_logging, redact_text


def test_redact_text_patterns() -> None:
    text = redact_text(
        "GET /act_1/insights?access_token=EAABsecret&fields=spend Authorization: Bearer ya29.tok "
        "redis://:hunter2@cache:6379/0"
    )
    assert "EAABsecret" not in text and "ya29.tok" not in text and "hunter2" not in text
    assert "fields=spend" in text


def test_json_logs_redact_and_carry_component(capsys: Any) -> None:
    configure_logging(Settings(log_format="json"), force=True)
    try:
        log = structlog.get_logger("t").bind(component="SNAPSHOT_SYNC")
        log.info("sync_started", access_token="EAAB-secret", url="https://x/?access_token=EAAB-secret2")
        logging.getLogger("arq.worker").info("job failed: Bearer abc.def")
        err = capsys.readouterr().err.strip().splitlines()
        first, second = json.loads(err[-2]), json.loads(err[-1])
        assert first["event"] == "sync_started" and first["component"] == "SNAPSHOT_SYNC"
        assert "EAAB-secret" not in err[-2]
        assert second["component"] == "ARQ" and "abc.def" not in err[-1]
    finally:
        configure_logging(Settings(), force=True)


def test_module_loggers_created_before_configuration_are_redacted(capsys: Any) -> None:
    """Workers import core modules before arq's startup configures logging: their loggers must follow."""
    from core.enqueue import log as enqueue_log  # bound with a component at import time

    configure_logging(Settings(log_format="json"), force=True)
    try:
        enqueue_log.info("sync_enqueued", note="Authorization: Bearer abc.secret")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        event = json.loads(line)
        assert event["component"] == "ARQ-ENQUEUE" and "abc.secret" not in line
    finally:
        configure_logging(Settings(), force=True)
