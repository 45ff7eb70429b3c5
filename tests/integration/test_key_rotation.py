"""`metricx keys rotate`: every stored token re-encrypted under the new first key, old key retired."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import text

from core.db.engine import session_scope
from core.providers import Credentials
from core.services import create_connection, create_workspace


async def test_rotate_reencrypts_every_token_under_the_new_key(metricx_env: Any) -> None:
    old = metricx_env.env["METRICX_ENCRYPTION_KEYS"]
    async with session_scope() as session:
        ws = await create_workspace(session, "rotation")
        conn = await create_connection(
            session, ws.id, "testprovider", "acct-rotate", Credentials("EAAB-access", "1//refresh")
        )
    new = Fernet.generate_key().decode()
    env = {**os.environ, **metricx_env.env, "METRICX_ENCRYPTION_KEYS": f"{new},{old}"}
    metricx = os.path.join(os.path.dirname(sys.executable), "metricx")
    result = subprocess.run([metricx, "keys", "rotate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted" in result.stdout

    async with session_scope() as session:
        row = (
            await session.execute(
                text("SELECT access_token_enc, refresh_token_enc FROM credentials WHERE connection_id = :c"),
                {"c": conn.id},
            )
        ).one()
    only_new = MultiFernet([Fernet(new)])  # the old key can now be dropped
    assert only_new.decrypt(bytes(row.access_token_enc)) == b"EAAB-access"
    assert only_new.decrypt(bytes(row.refresh_token_enc)) == b"1//refresh"
    assert b"EAAB-access" not in bytes(row.access_token_enc)
    _rotate_back(metricx_env, new, old)


async def test_rotate_reencrypts_a_connect_flow_under_way(metricx_env: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from core.crypto import encrypt
    from core.db.models import ConnectSession

    old = metricx_env.env["METRICX_ENCRYPTION_KEYS"]
    async with session_scope() as session:
        ws = await create_workspace(session, "rotation-flow")
        flow = ConnectSession(
            workspace_id=ws.id,
            provider="testprovider",
            state_digest=f"rotation-{ws.id}",
            status="authorized",
            params={},
            accounts=[],
            access_token_enc=encrypt("flow-access"),
            code_verifier_enc=encrypt("flow-verifier"),
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        session.add(flow)
        await session.flush()
        flow_id = flow.id
    new = Fernet.generate_key().decode()
    env = {**os.environ, **metricx_env.env, "METRICX_ENCRYPTION_KEYS": f"{new},{old}"}
    metricx = os.path.join(os.path.dirname(sys.executable), "metricx")
    result = subprocess.run([metricx, "keys", "rotate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    async with session_scope() as session:
        row = (
            await session.execute(
                text("SELECT access_token_enc, code_verifier_enc FROM connect_sessions WHERE id = :f"),
                {"f": flow_id},
            )
        ).one()
    only_new = MultiFernet([Fernet(new)])
    assert only_new.decrypt(bytes(row.access_token_enc)) == b"flow-access"
    assert only_new.decrypt(bytes(row.code_verifier_enc)) == b"flow-verifier"
    _rotate_back(metricx_env, new, old)


def _rotate_back(metricx_env: Any, new: str, old: str) -> None:
    """Every token of the run (other tests' too) back under the run's key, which the next test uses."""
    env = {**os.environ, **metricx_env.env, "METRICX_ENCRYPTION_KEYS": f"{old},{new}"}
    metricx = os.path.join(os.path.dirname(sys.executable), "metricx")
    result = subprocess.run([metricx, "keys", "rotate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
