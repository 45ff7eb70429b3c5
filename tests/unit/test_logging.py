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


def _fail_with_token_in_locals(depth: int) -> None:
    access_token = "EAAB-local-secret-token"  # a local, as a request body's token was in the audit
    customer = {"email": "jane.doe@example.com"}
    if depth:
        _fail_with_token_in_locals(depth - 1)
    raise RuntimeError(f"insert failed for {customer['email']} ({len(access_token)})")


def _log_failure(capsys: Any, log_format: str, depth: int = 0) -> str:
    configure_logging(Settings(log_format=log_format), force=True)  # type: ignore[arg-type]
    try:
        try:
            _fail_with_token_in_locals(depth)
        except RuntimeError:
            structlog.get_logger("t").exception("request_failed")
        return str(capsys.readouterr().err)
    finally:
        configure_logging(Settings(), force=True)


def test_tracebacks_never_show_locals_or_personal_data(capsys: Any) -> None:
    for log_format in ("console", "json"):
        err = _log_failure(capsys, log_format)
        assert "request_failed" in err and "RuntimeError" in err and "_fail_with_token_in_locals" in err
        assert "EAAB-local-secret-token" not in err, log_format
        assert "jane.doe@example.com" not in err, log_format


def test_tracebacks_are_bounded(capsys: Any) -> None:
    for log_format in ("console", "json"):
        err = _log_failure(capsys, log_format, depth=500)
        assert "RuntimeError" in err
        assert len(err) < 12_000, (log_format, len(err))


def test_unset_format_follows_whether_stderr_is_a_terminal(capsys: Any) -> None:
    from core.logging import resolved_format

    assert Settings().log_format is None
    assert resolved_format(Settings()) == "json"  # pytest's captured stderr is no terminal
    assert resolved_format(Settings(log_format="console")) == "console"
    configure_logging(Settings(), force=True)
    structlog.get_logger("t").info("hello", n=1)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["event"] == "hello"


def test_a_worker_started_by_arqs_command_logs_each_arq_line_once(capsys: Any) -> None:
    """`arq core.worker.WorkerSettings` applies arq's own log config, then the worker's startup
    configures ours: each arq line must come out once, in our format."""
    import logging.config

    from arq.logs import default_log_config

    logging.config.dictConfig(default_log_config(verbose=False))
    configure_logging(Settings(log_format="json"), force=True)
    try:
        logging.getLogger("arq.worker").info("job %s started", "abc")
        lines = [line for line in capsys.readouterr().err.splitlines() if "job abc started" in line]
        assert len(lines) == 1, lines
        assert json.loads(lines[0])["component"] == "ARQ"
    finally:
        configure_logging(Settings(), force=True)
