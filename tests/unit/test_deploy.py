"""deploy/: compose.yaml against the Compose Specification schema, the manifests against Kubernetes'."""

from __future__ import annotations

import json
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
    assert services["worker"]["command"] == ["arq", "core.worker.WorkerSettings"]
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
