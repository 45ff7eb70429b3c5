"""deploy/: compose.yaml against the Compose Specification schema, the manifests against Kubernetes'."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    vendored = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    jsonschema.validate(compose(), schema)


def test_compose_topology() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "scheduler"}
    assert services["worker"]["command"] == ["metricx", "worker"]
    assert services["scheduler"]["command"] == ["python", "-m", "core.scheduler"]
    assert services["migrate"]["command"] == ["metricx", "db", "upgrade"]
    # --scale worker=3 needs a worker without a fixed name or host port
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("api", "worker", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "METRICX_ENCRYPTION_KEYS"} <= set(env)


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        # a CRD: not in Kubernetes' own schemas; check the fields KEDA requires
        assert doc["kind"] == "ScaledObject" and doc["spec"]["scaleTargetRef"]["name"] == "metricx-worker"
        assert doc["spec"]["triggers"][0]["type"] == "metrics-api"
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_probes_and_single_scheduler() -> None:
    by_name = {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == "Deployment"}
    assert by_name["metricx-scheduler"]["spec"]["replicas"] == 1
    assert by_name["metricx-scheduler"]["spec"]["strategy"]["type"] == "Recreate"
    for name in ("metricx-api", "metricx-worker"):
        container = by_name[name]["spec"]["template"]["spec"]["containers"][0]
        assert "livenessProbe" in container and "readinessProbe" in container
        assert {ref.get("secretRef", {}).get("name") for ref in container["envFrom"]} >= {"metricx-secrets"}


# --- Prometheus alert rules and the Grafana dashboard (promtool is not available: check structure and names)

METRIC_TOKEN = re.compile(r"\bmetricx_[a-z0-9_]+")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported(name: str) -> bool:
    """A series name the metricx registries export (a family name plus a counter/histogram suffix)."""
    from core.metrics import METRIC_NAMES

    if name in METRIC_NAMES:
        return True
    return any(name.endswith(s) and name[: -len(s)] in METRIC_NAMES for s in SUFFIXES)


def check_expr(expr: str) -> set[str]:
    """The metricx series ``expr`` names; fails on unbalanced brackets or an unknown name."""
    for open_, close in ("()", "[]", "{}"):
        assert expr.count(open_) == expr.count(close), f"unbalanced {open_}{close} in {expr!r}"
    names = set(METRIC_TOKEN.findall(expr))
    assert names, f"no metricx metric in {expr!r}"
    unknown = {n for n in names if not exported(n)}
    assert not unknown, f"{expr!r} names metrics core/metrics.py does not export: {unknown}"
    for value in re.findall(r'sync_status=~?"([^"]+)"', expr):
        from core.state import SyncStatus

        assert set(value.split("|")) <= {s.value for s in SyncStatus}, value
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    assert set(doc) == {"groups"}
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        rules += group["rules"]
    return rules


def test_alert_rules_are_well_formed_and_name_exported_metrics() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"])
        check_expr(rule["expr"])


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    by_metric = {frozenset(check_expr(rule["expr"])) for rule in alert_rules()}
    covered = set().union(*by_metric)
    assert {
        "metricx_queue_oldest_job_age_seconds",  # queue age
        "metricx_connections",  # connections needing attention
        "metricx_scheduler_leader_present",  # scheduler without a leader
        "metricx_provider_api_sunset_days_left",  # sunset approaching
    } <= covered


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yaml").read_text())
    assert config["rule_files"] == ["alerts.yaml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"metricx-api", "metricx-worker", "metricx-scheduler"}


def test_grafana_dashboard_charts_every_exported_metric() -> None:
    from core.metrics import METRIC_NAMES

    dash = json.loads((DEPLOY / "grafana" / "metricx-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids))
    charted: set[str] = set()
    for panel in dash["panels"]:
        assert panel["title"] and panel["targets"] and panel["datasource"]["type"] == "prometheus"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            charted |= {n for n in check_expr(target["expr"])}
    families = {
        n if n in METRIC_NAMES else next(n[: -len(s)] for s in SUFFIXES if n.endswith(s)) for n in charted
    }
    assert families == METRIC_NAMES


def test_worker_and_scheduler_expose_their_metrics_ports() -> None:
    services = compose()["services"]
    assert services["worker"]["environment"]["METRICX_WORKER_METRICS_PORT"] == "9100"
    assert services["scheduler"]["environment"]["METRICX_SCHEDULER_METRICS_PORT"] == "9101"
    assert {"DATABASE_URL", "REDIS_URL"} <= set(services["worker"]["environment"])
