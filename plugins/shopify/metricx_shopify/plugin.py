"""The metricx hook implementations of the Shopify plugin (thin: logic lives in the other modules)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core import JobSpec, OAuthConnector, Provider, ScheduleEntry, SimulatorSpec, hookimpl
from metricx_shopify.connect import ShopifyConnector
from metricx_shopify.demo import SIMULATOR
from metricx_shopify.jobs import FANOUT_JOB, STORE_SYNC, scheduled_shopify_sync
from metricx_shopify.provider import ShopifyProvider
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.webhooks import APPLY_JOB, apply_webhook

if TYPE_CHECKING:
    from fastapi import APIRouter


@hookimpl
def metricx_core_version() -> str:
    """This plugin works with metricx core 0.1.x."""
    return ">=0.1,<0.2"


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register the Shopify provider (settings from ``METRICX_SHOPIFY_*``)."""
    register(ShopifyProvider())


@hookimpl
def register_connectors(register: Callable[[OAuthConnector], None]) -> None:
    """Connect a store with the authorization code grant (app credentials from ``METRICX_SHOPIFY_*``)."""
    register(ShopifyConnector())


@hookimpl
def register_jobs(register: Callable[[JobSpec], None]) -> None:
    """The store sync (the seed's ``process_shopify_sync_job``), its scheduled fan-out, the webhook apply."""
    register(STORE_SYNC.job_spec())
    register(JobSpec(FANOUT_JOB, scheduled_shopify_sync, max_tries=1))
    # Applies one webhook delivery from shopify_webhook_inbox; retries itself (arq Retry) up to
    # WEBHOOK_APPLY_MAX_TRIES, so arq's own cap sits above that.
    register(JobSpec(APPLY_JOB, apply_webhook, max_tries=get_shopify_settings().webhook_apply_max_tries + 1))


@hookimpl
def register_schedules(register: Callable[[ScheduleEntry], None]) -> None:
    """Every Shopify connection's store sync, hourly by default (``METRICX_SHOPIFY_SYNC_CRON``)."""
    register(
        ScheduleEntry(
            "shopify_store_sync",
            get_shopify_settings().sync_cron,
            FANOUT_JOB,
            description="store sync (products, customers, orders) of every Shopify connection",
        )
    )


@hookimpl
def register_routers(register: Callable[[APIRouter], None]) -> None:
    """The webhook receiver, served under ``/v1/plugins/shopify/webhooks``."""
    from metricx_shopify.webhooks import router

    register(router)


@hookimpl
def migration_locations() -> str | None:
    """The plugin's Alembic branch ``shopify`` (depends on the core's revision 0001)."""
    return str(Path(__file__).resolve().parent / "migrations" / "versions")


@hookimpl
def register_simulators(register: Callable[[SimulatorSpec], None]) -> None:
    """Let `metricx demo` run the Shopify simulator."""
    register(SIMULATOR)


@hookimpl
def register_secret_patterns(register: Callable[[str | re.Pattern[str]], None]) -> None:
    """Shopify's access-token header never reaches a log line."""
    register("X-Shopify-Access-Token")
