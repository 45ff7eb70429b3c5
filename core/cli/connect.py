"""``metricx connect PROVIDER``: the OAuth connect flow from a terminal.

Prints the authorization URL; then either listens on ``METRICX_PUBLIC_URL`` (a loopback address,
e.g. ``http://127.0.0.1:8765``, registered as the app's redirect URL) for the browser to come back
(``--listen``), or takes the URL the browser was sent to (``--redirect-url``, or pasted when asked).
Then lists the accounts found and connects the ones picked (``--account``, ``--all``, or asked).
Like the other commands it talks to PostgreSQL and Redis directly.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import typer
from rich.table import Table

from core.cli.common import console, err, parse_uuid, print_json, run_quiet
from core.errors import ConfigError
from core.providers import SyncMode

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def callback_query(pasted: str, authorization_url: str) -> dict[str, str]:
    """The callback's query from a pasted redirect URL, or from a bare code (the state is ours)."""
    text = pasted.strip()
    if "?" in text or "=" in text:
        query = dict(parse_qsl(urlsplit(text).query if "?" in text else text, keep_blank_values=True))
    else:
        query = {"code": text}
    if "state" not in query:
        query["state"] = dict(parse_qsl(urlsplit(authorization_url).query)).get("state", "")
    return query


async def _listen(provider: str, timeout_s: float) -> dict[str, str]:
    """Serve ``METRICX_PUBLIC_URL``'s loopback port until the browser comes back; its query."""
    from core.config import get_settings

    parts = urlsplit(get_settings().public_url)
    if parts.hostname not in LOOPBACK or not parts.port:
        raise ConfigError(
            "--listen needs METRICX_PUBLIC_URL on a loopback address with a port "
            "(e.g. http://127.0.0.1:8765, registered as the app's redirect URL)"
        )
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    path = f"/v1/connect/{provider}/callback"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode(errors="replace").split(" ")
        target = line[1] if len(line) > 1 else "/"
        found = urlsplit(target)
        ok = found.path == path and not got.done()
        if ok:
            got.set_result(dict(parse_qsl(found.query, keep_blank_values=True)))
        body = b"You can close this tab and go back to the terminal." if ok else b"Not found"
        status = b"200 OK" if ok else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: ")
        writer.write(str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, parts.hostname, parts.port)
    try:
        return await asyncio.wait_for(got, timeout_s)
    except TimeoutError:
        raise ConfigError(
            f"no browser came back to {path} within {timeout_s:.0f}s; run connect again"
        ) from None
    finally:
        server.close()
        await server.wait_closed()


def _choose(accounts: list[dict[str, Any]], picked: list[str], pick_all: bool) -> list[str]:
    connectable = [a for a in accounts if a["connectable"] and not a["already_connected"]]
    if pick_all:
        return [a["external_account_id"] for a in connectable]
    if picked:
        return picked
    if not connectable:
        raise ConfigError("no account left to connect (all are connected already or not connectable)")
    answer = typer.prompt(
        "Accounts to connect (numbers or ids, comma-separated; 'all' for every one)", err=True
    )
    if answer.strip().lower() == "all":
        return [a["external_account_id"] for a in connectable]
    chosen = []
    for part in (p.strip() for p in answer.split(",") if p.strip()):
        chosen.append(
            accounts[int(part) - 1]["external_account_id"] if part.isdigit() and len(part) < 4 else part
        )
    return chosen


def _table(accounts: list[dict[str, Any]]) -> Table:
    table = Table("#", "account", "name", "currency", "timezone", "status")
    for n, a in enumerate(accounts, start=1):
        state = "connected" if a["already_connected"] else (a["note"] or "-")
        table.add_row(
            str(n),
            a["external_account_id"],
            a["name"] or "-",
            a["currency"] or "-",
            a["timezone"] or "-",
            state,
        )
    return table


def connect(
    provider: str = typer.Argument(
        ..., help="meta, google, shopify, or another provider with a connect flow."
    ),
    workspace: str = typer.Option(..., "--workspace", "-w", help="The workspace id."),
    shop: str = typer.Option(None, help="Shopify: the store's domain (name.myshopify.com)."),
    reconnect: str = typer.Option(None, help="Give this connection the new credentials instead."),
    listen: bool = typer.Option(False, help="Wait for the browser on METRICX_PUBLIC_URL (a loopback URL)."),
    redirect_url: str = typer.Option(None, help="The URL the browser was sent back to (or just its code)."),
    session: str = typer.Option(None, help="Pick from a connect session the API's callback page named."),
    account: list[str] = typer.Option([], "--account", "-a", help="An account to connect (repeatable)."),
    pick_all: bool = typer.Option(False, "--all", help="Connect every account found."),
    backfill: bool = typer.Option(True, help="Enqueue each new connection's history backfill."),
    timeout_s: float = typer.Option(300.0, "--timeout", help="Seconds --listen waits for the browser."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Connect accounts with the platform's login: open the printed URL, consent, pick accounts."""
    import httpx

    from core.db.engine import get_sessionmaker
    from core.db.models import Workspace
    from core.redis import create_arq_pool
    from core.services import enqueue_syncs
    from core.services.connect import (
        accounts_found,
        authorized_session,
        complete_callback,
        pick_accounts,
        start_connect,
    )

    async def body() -> dict[str, Any]:
        from core.preflight import require_encryption_keys

        require_encryption_keys()
        ws_id = parse_uuid(workspace, "workspace")
        session_id = parse_uuid(session, "session") if session else None
        maker = get_sessionmaker()
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
            if session_id is None:
                async with maker() as db, db.begin():
                    if await db.get(Workspace, ws_id) is None:
                        raise ConfigError(f"workspace {workspace} does not exist")
                    started = await start_connect(
                        db,
                        workspace_id=ws_id,
                        api_key_id=None,
                        provider=provider,
                        params={"shop": shop} if shop else {},
                        reconnect=parse_uuid(reconnect, "connection") if reconnect else None,
                    )
                err.print("Open this URL in a browser, log in and allow access:", highlight=False)
                print(started.authorization_url, flush=True)
                if listen:
                    query = await _listen(provider, timeout_s)
                else:
                    pasted = redirect_url or typer.prompt(
                        "Paste the URL the browser was sent to (or its code)", err=True
                    )
                    query = callback_query(pasted, started.authorization_url)
                row = await complete_callback(http, provider, query)
                if row.reconnect_connection_id is not None:
                    return {
                        "reconnected": str(row.reconnect_connection_id),
                        "renewed": list(row.params.get("reconnected", [])),
                        "not_reconnected": list(row.params.get("not_reconnected", [])),
                        "connections": [],
                    }
                session_id = row.id
            async with maker() as db:
                found_row = await authorized_session(
                    db,
                    workspace_id=ws_id,
                    api_key_id=None,
                    provider=provider,
                    session_id=session_id,
                    check_key=False,
                )
                accounts = await accounts_found(db, found_row)
                if not as_json:
                    console.print(_table(accounts))
                chosen = _choose(accounts, account, pick_all)
                redis = await create_arq_pool()
                try:
                    created = await pick_accounts(db, found_row, chosen, http=http, redis=redis)
                    await db.commit()
                    jobs = await enqueue_syncs(db, redis, created, SyncMode.backfill) if backfill else []
                    await db.commit()
                finally:
                    await redis.aclose()
                return {
                    "session_id": str(session_id),
                    "connections": [
                        {
                            "id": str(c.id),
                            "external_account_id": c.external_account_id,
                            "name": c.name,
                            "timezone": c.timezone,
                            "currency": c.currency,
                        }
                        for c in created
                    ],
                    "backfills": [dict(j) for j in jobs],
                }

    out = run_quiet(body)
    if as_json:
        print_json(out)
        return
    if out.get("reconnected"):
        for renewed in out["renewed"]:
            console.print(f"connection {renewed} has new credentials", highlight=False)
        for left in out["not_reconnected"]:
            console.print(
                f"connection {left} shared the old login, which this one cannot replace (its account "
                "is not reachable with it): reconnect it on its own",
                highlight=False,
            )
        return
    for c in out["connections"]:
        console.print(
            f"connected {provider} account {c['external_account_id']}: {c['id']} ({c['timezone']}, "
            f"{c['currency']})",
            highlight=False,
        )


__all__ = ["callback_query", "connect"]
