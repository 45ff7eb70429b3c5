"""No tenant reaches another's data: every route, walked from ``app.routes`` (plugin routers included, so
a new route is covered or fails here), answers 404 to another workspace's key; job ids of every kind too."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts

from tests.conftest import fetch_one
from tests.integration.test_api_support import connect, new_tenant

# Routes outside a workspace: public probes and documentation, the operator's workspace
# endpoints, and the provider list (installed plugins, not tenant data).
NOT_TENANT_SCOPED = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/health/queue"),
    ("GET", "/v1/providers"),
    ("GET", "/v1/workspaces"),
    ("POST", "/v1/workspaces"),
    ("GET", "/metrics"),  # counts only, no tenant data (tests/integration/test_metrics.py)
    # Authenticated by the store's signature, routed by the signed shop domain: another tenant's
    # store is never touched (tests/security/test_webhook_corpus.py::test_a_webhook_reaches_only_its_shop).
    ("POST", "/v1/plugins/shopify/webhooks"),
    # Where a platform sends the browser back after consent: no key, the signed single-use state picks
    # the workspace (plugins/meta/tests/test_meta_connect.py::test_a_flow_lands_only_in_its_own_workspace).
    ("GET", "/v1/connect/{provider}/callback"),
}
# The dashboard (core/web): its workspace comes from the session cookie, not the URL;
# tests/integration/test_web.py walks its connection routes with another workspace's session.
DASHBOARD = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/_live/connections"),
    ("GET", "/dashboard/connections/{connection_id}"),
    ("GET", "/dashboard/connections/{connection_id}/_live"),
    ("POST", "/dashboard/connections/{connection_id}/{action}"),
    # The connect flow in the dashboard (core/web/connect.py): the workspace is the session's;
    # plugins/meta/tests/test_meta_connect.py::test_the_dashboard_picks_only_its_own_workspaces_accounts.
    ("POST", "/dashboard/connect/{provider}"),
    ("GET", "/dashboard/connect/{provider}/accounts"),
    ("POST", "/dashboard/connect/{provider}/accounts"),
}
BODIES = {
    "/connections": {
        "provider": "testprovider",
        "external_account_id": "acct-intruder",
        "credentials": {"access_token": "tp-valid-token"},
    },
    "/sync": {"mode": "realtime"},
    "/accounts": {"accounts": ["acct-intruder"]},
    "/api-keys": {"name": "intruder"},
    "/webhooks": {"url": "https://93.184.215.14/hook"},  # a public address literal: no DNS lookup
}


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, including included and plugin routers."""
    found = []
    for context in iter_route_contexts(app.routes):
        for method in sorted(getattr(context, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, context.path))
    return found


def body_for(path: str) -> dict[str, Any] | None:
    for suffix, body in BODIES.items():
        if path.endswith(suffix):
            return body
    return None


async def test_every_workspace_route_hides_other_tenants_objects(
    api: httpx.AsyncClient, sim: Any, run_worker: Any
) -> None:
    owner = await new_tenant(api, "owner-secret-name")
    intruder = await new_tenant(api)
    conn = await connect(api, owner, sim.url, account="acct-owner-secret")
    sync = await api.post(owner.url(f"/connections/{conn['id']}/sync"), headers=owner.headers)
    await run_worker()
    key = await api.post(owner.url("/api-keys"), json={"name": "owner-key"}, headers=owner.headers)
    hook = await api.post(owner.url("/alerts/webhooks"), json=BODIES["/webhooks"], headers=owner.headers)
    ids = {
        "connection_id": conn["id"],
        "job_id": sync.json()["job_id"],
        "key_id": key.json()["id"],
        "webhook_id": hook.json()["id"],
        "provider": "testprovider",
    }
    secrets = [owner.workspace_id, conn["id"], "owner-secret-name", "acct-owner-secret", key.json()["prefix"]]
    app = api._transport.app  # type: ignore[attr-defined]

    walked = []
    for method, path in routes(app):
        if "{workspace_id}" not in path:
            assert (method, path) in NOT_TENANT_SCOPED | DASHBOARD, (
                f"{method} {path} is not workspace-scoped: add a test"
            )
            continue
        names = set(re.findall(r"{(\w+)}", path)) - {"workspace_id"}
        assert names <= ids.keys(), f"{method} {path}: no fixture object for {names - ids.keys()}"
        # Both the owner's workspace in the URL and the intruder's own workspace with the owner's ids.
        for workspace in (owner.workspace_id, intruder.workspace_id):
            url = path.format(workspace_id=workspace, **ids)
            if workspace == intruder.workspace_id and not names:
                continue  # the intruder's own workspace-level resource: not the owner's object
            response = await api.request(method, url, json=body_for(path), headers=intruder.headers)
            assert response.status_code == 404, f"{method} {url} -> {response.status_code} {response.text}"
            assert response.json()["error"]["code"].endswith("_not_found")
            for secret in secrets:
                assert secret not in response.text, f"{method} {url} leaked {secret!r}"
        walked.append((method, path))
    assert len(walked) >= 15
    assert any(path.startswith("/v1/plugins/") for _, path in routes(app)), "plugin routes were not walked"

    # Job ids of every kind, the owner's connection in them: none is the intruder's to read.
    for job_id in (
        f"sync:{conn['id']}:realtime:cron:scheduled_realtime_sync:1",
        f"sync:{conn['id']}:backfill:1",
        f"testprovider:{conn['id']}:sync",
        "cron:scheduled_compaction:1",
        "alert:1:1",
    ):
        response = await api.get(intruder.url(f"/jobs/{job_id}"), headers=intruder.headers)
        assert response.status_code == 404, f"{job_id} -> {response.status_code}"
        assert conn["id"] not in response.text.replace(job_id, "")

    # Nothing the intruder sent changed the owner's objects.
    row = await fetch_one("SELECT status FROM connections WHERE id = :c", c=conn["id"])
    assert row.status == "active"
    still = await api.get(owner.url(), headers={"Authorization": f"Bearer {key.json()['key']}"})
    assert still.status_code == 200
    count = await fetch_one(
        "SELECT count(*) AS n FROM connections WHERE workspace_id = :w", w=owner.workspace_id
    )
    assert count.n == 1


async def test_a_job_id_of_another_workspace_is_not_found(
    api: httpx.AsyncClient, sim: Any, run_worker: Any
) -> None:
    owner, intruder = await new_tenant(api), await new_tenant(api)
    conn = await connect(api, owner, sim.url)
    job_id = (await api.post(owner.url(f"/connections/{conn['id']}/sync"), headers=owner.headers)).json()[
        "job_id"
    ]
    await run_worker()
    assert (await api.get(owner.url(f"/jobs/{job_id}"), headers=owner.headers)).status_code == 200
    stolen = await api.get(intruder.url(f"/jobs/{job_id}"), headers=intruder.headers)
    assert stolen.status_code == 404 and conn["id"] not in stolen.text
