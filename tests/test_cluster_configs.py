"""The cluster configs: they parse, the launcher YAML validates against Ray's own schema, and the KubeRay manifests
have what KubeRay requires, reference our entrypoints, and agree on images, runtime env and the auth token."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from tests.conftest import ROOT

CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def cluster_spec(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def pod_templates(manifest: dict) -> list[dict]:
    spec = cluster_spec(manifest)
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    if manifest["kind"] == "RayJob":
        pods.append(manifest["spec"]["submitterPodTemplate"])
    return pods


def test_launcher_yaml_validates_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = load(CLUSTER / "ray-cluster-aws.yaml")
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types) and config["head_node_type"] == "head"
    assert (
        types["gpu_worker"]["max_workers"] >= 1
        and types["cpu_worker"]["max_workers"] > types["cpu_worker"]["min_workers"]
    )
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-train.yaml", "rayjob-label.yaml"])
def test_kuberay_manifests_have_required_fields_and_the_token(name):
    m = load(KUBERAY / name)
    assert m["apiVersion"] == "ray.io/v1" and m["metadata"]["name"]
    spec = cluster_spec(m)
    assert spec["rayVersion"] == ray.__version__
    assert "rayStartParams" in spec["headGroupSpec"]
    for group in spec["workerGroupSpecs"]:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for pod in pod_templates(m):
        for c in pod["spec"]["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "fer-ray-auth"
            assert c["image"].startswith(f"rayproject/ray:{ray.__version__}-py311-")


def test_rayjobs_run_our_entrypoints_with_one_runtime_env():
    train, label = load(KUBERAY / "rayjob-train.yaml"), load(KUBERAY / "rayjob-label.yaml")
    assert train["spec"]["entrypoint"].startswith("python jobs/train.py ")
    assert label["spec"]["entrypoint"].startswith("python jobs/label.py ")
    assert (ROOT / "jobs" / "train.py").is_file() and (ROOT / "jobs" / "label.py").is_file()
    assert train["spec"]["runtimeEnvYAML"] == label["spec"]["runtimeEnvYAML"]
    env = yaml.safe_load(label["spec"]["runtimeEnvYAML"])
    assert env["env_vars"]["TF_USE_LEGACY_KERAS"] == "1" and env["working_dir"]
    # Every dependency of fer that the Ray image does not ship is installed by the runtime env.
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    in_image = ("ray", "numpy", "pandas", "pyarrow")
    needed = {d.split(">")[0].split("[")[0].split("=")[0].strip() for d in deps} - set(in_image)
    assert needed == {p.split(">")[0].split("=")[0].strip() for p in env["pip"]}
    gpu = [g for g in cluster_spec(label)["workerGroupSpecs"] if g["groupName"] == "gpu"][0]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--gpus" in label["spec"]["entrypoint"] and "--gpus-per-worker 1" in train["spec"]["entrypoint"]
