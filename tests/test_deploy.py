"""deploy/kubernetes/beamish.yaml, checked as far as it can be without a Kubernetes
cluster (none runs here; deploy/README.md says so): it parses, the config it mounts is one
a node accepts, the commands it runs exist with those flags, and the mounts, ports and
names agree with the config and with each other."""

from __future__ import annotations

import os
import tomllib
from typing import Any

import pytest
import yaml

from beamish.runtime.client.cli import build_parser
from beamish.runtime.node.cluster_node import cluster_settings
from beamish.runtime.node.config import parse_config
from tests.conftest import REPO

MANIFEST = os.path.join(REPO, "deploy", "kubernetes", "beamish.yaml")


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], Any]:
    with open(MANIFEST) as fh:
        return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(fh)}


def _container(docs: dict[tuple[str, str], Any]) -> Any:
    [container] = docs["StatefulSet", "beamish"]["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: Any) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_manifest_holds_a_statefulset_its_services_and_its_config(docs):
    assert set(docs) == {("ConfigMap", "beamish-config"), ("Service", "beamish"),
                         ("Service", "beamish-front"), ("StatefulSet", "beamish")}
    sts = docs["StatefulSet", "beamish"]["spec"]
    assert sts["serviceName"] == "beamish" and sts["replicas"] == 3
    assert docs["Service", "beamish"]["spec"]["clusterIP"] == "None"  # headless
    labels = sts["template"]["metadata"]["labels"]
    for name in ("beamish", "beamish-front"):
        assert docs["Service", name]["spec"]["selector"].items() <= labels.items()
    assert sts["selector"]["matchLabels"].items() <= labels.items()


def test_the_mounted_config_is_a_cluster_config_the_node_accepts(docs):
    config = parse_config(tomllib.loads(docs["ConfigMap", "beamish-config"]["data"]
                                        ["beamish.toml"]), "beamish.toml")
    assert config.cluster is not None
    # The DSN comes from the environment (the Secret), the node's name from the host name.
    settings = cluster_settings(config.cluster, {"BEAMISH_POSTGRES": "postgresql://db/x"})
    assert settings is not None and settings.cluster == "prod"
    port = int(config.cluster.listen.rsplit(":", 1)[1])  # type: ignore[union-attr]
    container = _container(docs)
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for name in ("beamish", "beamish-front"):
        assert [p["targetPort"] for p in docs["Service", name]["spec"]["ports"]] == [port]
    env = _env(container)
    assert env["BEAMISH_POSTGRES"]["secretKeyRef"]["key"] == "dsn"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["keys"] == config.cluster.keys
    volumes = {v["name"]: v for v in docs["StatefulSet", "beamish"]["spec"]["template"]
               ["spec"]["volumes"]}
    paths = {i["path"] for i in volumes["keys"]["secret"]["items"]}
    assert {"secret.key", "public.key"} <= paths and any(p.startswith("authorized/")
                                                         for p in paths)
    assert volumes["keys"]["secret"]["defaultMode"] & 0o077 == 0  # the node checks it
    assert env["BEAMISH_DIR"].startswith(mounts["data"] + "/")


def test_its_commands_exist_with_their_flags(docs):
    container = _container(docs)
    parser = build_parser()
    start = parser.parse_args(container["command"][1:])
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert (start.node_command, start.foreground, start.config) == \
        ("start", True, config_mount["mountPath"])
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    args = parser.parse_args(drain[1:])
    assert args.node_command == "drain" and container["command"][0] == drain[0] == "beamish"
    grace = docs["StatefulSet", "beamish"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    assert args.timeout < grace  # the drain ends before the kubelet's SIGKILL
    probe = container["readinessProbe"]["exec"]["command"]
    assert parser.parse_args(probe[1:]).node_command == "status"
