"""The service layer the API and the CLI both call: workspaces, keys, connections, syncs, job outcomes.

Nothing here knows HTTP or the terminal: routes (``core/api``) and commands (``core/cli``) turn
its results and errors into responses and lines.
"""

from __future__ import annotations

from core.services.accounts import (
    KEY_PREFIX,
    create_api_key,
    create_connection,
    create_workspace,
    delete_snapshots,
    delete_workspace,
    hash_key,
    rotate_credentials,
)
from core.services.connections import (
    VALIDATION_MAX_WAIT_S,
    ConnectionDeleted,
    ConnectionExists,
    ProviderNotInstalled,
    ValidatedAccount,
    add_connection,
    delete_connection,
    enqueue_syncs,
    installed_provider,
    job_mode,
    set_connection_status,
    validate_account,
)
from core.services.credentials import (
    ConnectionNotFound,
    Reconnected,
    WrongAccount,
    credentials_from,
    replace_credentials,
)
from core.services.jobs import job_outcome

__all__ = [
    "KEY_PREFIX",
    "VALIDATION_MAX_WAIT_S",
    "ConnectionDeleted",
    "ConnectionExists",
    "ConnectionNotFound",
    "ProviderNotInstalled",
    "Reconnected",
    "ValidatedAccount",
    "WrongAccount",
    "add_connection",
    "create_api_key",
    "create_connection",
    "create_workspace",
    "credentials_from",
    "delete_connection",
    "delete_snapshots",
    "delete_workspace",
    "enqueue_syncs",
    "hash_key",
    "installed_provider",
    "job_mode",
    "job_outcome",
    "replace_credentials",
    "rotate_credentials",
    "set_connection_status",
    "validate_account",
]
