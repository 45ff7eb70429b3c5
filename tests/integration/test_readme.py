"""Every command in the README's bash blocks works as written (issue 17 item 6).

Each line is either run, in one bash script from a folder laid out like a clone (``.venv`` beside
it), or skipped for a stated reason; a README line this file does not know fails the test, so a new
command cannot slip in untested. Lines naming real servers run against the test's PostgreSQL and
Redis instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.testing.servers import create_database, drop_database, with_database

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
COMMENT = re.compile(r"\s+#\s.*$")

# A README line -> why it is not run here (everything else is run as written, or substituted below).
SKIPPED = {
    "./scripts/demo.sh": "runs for minutes: tests/integration/test_demo.py runs the demo",
    "./scripts/test.sh": "is this test suite",
    "./scripts/install.sh": "creates the .venv this suite runs in (scripts/test.sh runs it first)",
    "arq core.worker.WorkerSettings": "runs until stopped: tests/integration/test_worker_process.py",
    "python -m core.scheduler": "runs until stopped: tests/integration/test_scheduler.py",
    "metricx api --host 0.0.0.0 --port 8000": "runs until stopped: tests/integration/test_api_process.py",
    '. .metricx/demo/cli.env && .venv/bin/metricx connect meta -w "$METRICX_DEMO_WORKSPACE" --listen --all': (
        "needs the running demo and a user's Allow: tests/integration/test_demo.py pastes the demo's own "
        "printed form of this line and allows access"
    ),
}
# Lines that name the reader's own servers or secrets: run with the test's instead.
SUBSTITUTED = ("export DATABASE_URL=", "export REDIS_URL=", "export METRICX_OPERATOR_KEY=")


def readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in BLOCK.findall(text):
        for line in block.splitlines():
            command = COMMENT.sub("", line).strip()
            if command:
                lines.append(command)
    return lines


def script(lines: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    """The bash script of the lines to run, and the lines skipped."""
    body, skipped = ["set -euo pipefail"], []
    for line in lines:
        if line in SKIPPED:
            skipped.append(line)
        elif line.startswith(SUBSTITUTED):
            name = line.split("=", 1)[0].removeprefix("export ")
            body.append(f"export {name}='{env[name]}'")
        else:
            body.append(line)
    return "\n".join(body), skipped


def test_the_readme_commands_this_file_skips_are_still_in_the_readme() -> None:
    lines = readme_lines()
    assert "metricx new-provider acme" in lines and "metricx db upgrade" in lines
    stale = set(SKIPPED) - set(lines)
    assert not stale, f"SKIPPED names lines the README no longer has: {stale}"


@pytest.mark.slow
def test_the_readme_commands_work_when_pasted(metricx_env: Any, tmp_path: Path) -> None:
    name = f"metricx_readme_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(metricx_env.server_url, name))
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the clone's .venv, as install.sh leaves it
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("METRICX_", "VIRTUAL_ENV"))},
        "METRICX_TEST_DATABASE_URL": os.environ.get("METRICX_TEST_DATABASE_URL", ""),
        "METRICX_TEST_REDIS_URL": os.environ.get("METRICX_TEST_REDIS_URL", ""),
        "DATABASE_URL": with_database(metricx_env.server_url, name),
        "REDIS_URL": metricx_env.redis_url,
        "METRICX_OPERATOR_KEY": "readme-operator-key-0123",
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # metricx only once .venv is activated, as for a reader
    }
    body, skipped = script(readme_lines(), env)
    assert len(skipped) == len(SKIPPED)
    try:
        proc = subprocess.run(
            ["bash", "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{body}\n---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        assert "acme" in proc.stdout  # `metricx plugins` lists the new provider
        assert re.search(r"\d+ passed", proc.stdout), proc.stdout[-2000:]  # its generated tests pass
        assert (tmp_path / "metricx-acme" / "pyproject.toml").is_file()
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-q", "-y", "metricx-acme"],
            capture_output=True,
            check=False,
        )
        asyncio.run(drop_database(metricx_env.server_url, name))
