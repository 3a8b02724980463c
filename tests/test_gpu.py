"""The GPU paths without GPUs: a real Ray node started with logical GPUs (`ray start --num-gpus 2`),
where `fer label --gpus` and `fer train --gpus-per-worker` must place their actors on GPU resources
(TensorFlow finds no device and runs on the CPU), and asking for more GPUs than a cluster has is an
environment error before any work starts, never a wait for ever."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import ROOT, SAMPLES, fer_cli
from tests.test_cluster import _kill_cluster, _node_ports, free_ports

pytestmark = pytest.mark.slow

_ACTORS = """
import json, ray
from ray.util.state import list_actors
ray.init(address="auto", logging_level="ERROR")
# In a placement group (Ray Train's workers) a resource is named GPU_group_<bundle>_<group>.
print(json.dumps([{"cls": a.class_name, "res": a.required_resources, "gpus": sum(
    v for k, v in (a.required_resources or {}).items() if k == "GPU" or k.startswith("GPU_group_") and
    k.count("_") == 3)} for a in list_actors(detail=True, limit=10000)]))
"""


def _start_head(env: dict, temp_dir: str) -> tuple[subprocess.Popen, str]:
    gcs, dash, client, *ports = free_ports(9)
    head = subprocess.Popen(
        ["ray", "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", "--num-cpus=2", "--num-gpus=2", *_node_ports(ports[:6]),
         "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return head, f"127.0.0.1:{gcs}"


def _up(env: dict) -> bool:
    try:
        return subprocess.run([sys.executable, "-c", _ACTORS], env=env, capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def gpu_node():
    """One node with 2 CPUs and 2 logical GPUs; env with its address and token. A head that
    dies while coming up (a raylet check failure seen once on a loaded machine) is started again."""
    temp_dir = tempfile.mkdtemp(prefix="ferg", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    heads = []
    try:
        for _attempt in range(3):
            head, address = _start_head(env, temp_dir)
            heads.append(head)
            env["RAY_ADDRESS"] = address
            deadline = time.time() + 120
            while head.poll() is None and time.time() < deadline and not _up(env):
                time.sleep(2)
            if head.poll() is None and _up(env):
                break
            env.pop("RAY_ADDRESS")
            _kill_cluster(temp_dir, heads)
        else:
            pytest.fail("the GPU node did not come up in three tries")
        yield env
    finally:
        _kill_cluster(temp_dir, heads)


def _fer(env, *args):
    return subprocess.run([sys.executable, "-m", "fer.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def _actors(env) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", _ACTORS], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_label_places_one_classifier_per_gpu(gpu_node, untrained_bundle, tmp_path):
    out = tmp_path / "out"
    proc = _fer(gpu_node, "label", str(SAMPLES / "single_face.mp4"), "--out", str(out), "--gpus", "2",
                "--model", str(untrained_bundle))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 done" in proc.stdout.splitlines()[-1]
    classifiers = [a for a in _actors(gpu_node) if "Classify" in a["cls"]]
    assert len(classifiers) == 2 and all(a["gpus"] == 1 for a in classifiers), classifiers
    decoders = [a for a in _actors(gpu_node) if "DecodeDetect" in a["cls"]]
    assert decoders and all(a["gpus"] == 0 for a in decoders)


def test_train_places_each_worker_on_a_gpu(gpu_node, tiny_dataset, tmp_path):
    proc = _fer(gpu_node, "train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--arch", "small",
                "--epochs", "1", "--workers", "2", "--cpus-per-worker", "1", "--gpus-per-worker", "1",
                "--batch-size", "32")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    workers = [a for a in _actors(gpu_node) if a["cls"] == "RayTrainWorker"]
    assert len(workers) == 2 and all(a["gpus"] == 1 for a in workers), workers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", str(SAMPLES / "single_face.mp4"), "--gpus", "3"], "--gpus 3 needs 3 GPUs; the Ray cluster has 2"),
        (
            ["train", "--arch", "small", "--workers", "3", "--gpus-per-worker", "1", "--cpus-per-worker", "1"],
            "--gpus-per-worker 1 x --workers 3 needs 3 GPUs; the Ray cluster has 2",
        ),
    ],
)
def test_more_gpus_than_the_cluster_has_is_an_environment_error(gpu_node, tiny_dataset, tmp_path, args, message):
    where = ["--out", str(tmp_path / "o")] + (["--data", str(tiny_dataset)] if args[0] == "train" else [])
    t0 = time.time()
    proc = _fer(gpu_node, *args, *where)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert time.time() - t0 < 120  # refused at start, not after a wait


def test_gpus_on_a_machine_without_gpus_is_refused(untrained_bundle, tmp_path):
    proc = fer_cli("label", str(SAMPLES / "single_face.mp4"), "--out", str(tmp_path), "--gpus", "1")
    assert proc.returncode == 3 and "--gpus 1 needs 1 GPUs; the Ray cluster has 0" in proc.stderr
    assert not list((tmp_path / "timelines").glob("*.parquet"))
