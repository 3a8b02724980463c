"""A real two-node Ray cluster on loopback: jobs submitted with `fer submit`, token authentication enforced.

The nodes run with `RAY_AUTH_MODE=token` and a token of the test's own, on free ports (another Ray may be running
on the machine), and are torn down by killing only the processes of this cluster's temp dir, never `ray stop`.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from fer.video.inputs import video_id
from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports(ports: list[int]) -> list[str]:
    names = ["--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port",
             "--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port"]  # fmt: skip
    return [f"{name}={port}" for name, port in zip(names, ports, strict=True)]


def _kill_cluster(temp_dir: str, procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    time.sleep(2)
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            if temp_dir.encode() in (pid_dir / "cmdline").read_bytes():
                os.kill(int(pid_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class Cluster:
    def __init__(self, env: dict, dashboard: str, temp_dir: str):
        self.env, self.dashboard, self.temp_dir = env, dashboard, temp_dir

    def fer(self, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fer.cli", *args], capture_output=True, text=True, cwd=ROOT,
            env=env or self.env, timeout=timeout,
        )  # fmt: skip

    def alive_nodes(self) -> int:
        code = "import ray; ray.init(address='auto'); print(sum(n['Alive'] for n in ray.nodes()))"
        env = {**self.env, "RAY_ADDRESS": self.gcs}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster():
    temp_dir = tempfile.mkdtemp(prefix="fert", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    gcs, dash, client, *ports = free_ports(15)
    common = ["--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    head = subprocess.Popen(
        ["ray", "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", "--num-cpus=1", *_node_ports(ports[:6]), *common],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs = [head]
    c = Cluster(env, f"http://127.0.0.1:{dash}", temp_dir)
    c.gcs = f"127.0.0.1:{gcs}"
    try:
        time.sleep(8)
        worker = subprocess.Popen(
            ["ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=2", *_node_ports(ports[6:12]), *common],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(worker)
        deadline = time.time() + 120
        while c.alive_nodes() < 2:
            assert time.time() < deadline, "the two-node cluster did not come up"
            time.sleep(3)
        yield c
    finally:
        _kill_cluster(temp_dir, procs)


def test_label_job_through_fer_submit(cluster, untrained_bundle, tmp_path):
    out = tmp_path / "labels"
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "--no-pip", "label",
        str(SAMPLES / "single_face.mp4"), str(SAMPLES / "no_face.mp4"), "--out", str(out),
        "--model", str(untrained_bundle), "--segment-seconds", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout
    job_id = next(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("submitted job"))
    assert cluster.fer("jobs", "status", job_id, "--address", cluster.dashboard).stdout.strip() == "SUCCEEDED"
    assert "2 done" in cluster.fer("jobs", "logs", job_id, "--address", cluster.dashboard).stdout
    df = pd.read_parquet(out / "timelines" / f"{video_id(SAMPLES / 'single_face.mp4')}.parquet")
    assert df.frame.nunique() == 72 and (df.face_id >= 0).mean() > 0.9


def test_training_job_through_fer_submit(cluster, tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "--no-pip", "train", "--data", str(tiny_dataset),
        "--out", str(run_dir), "--arch", "small", "--epochs", "2", "--workers", "2", "--cpus-per-worker", "1",
        "--batch-size", "32",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (run_dir / "model" / "model.json").is_file() and "epoch 2/2" in proc.stdout


def test_a_client_without_the_token_is_refused(cluster):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = cluster.fer("jobs", "status", "raysubmit_nothing", "--address", cluster.dashboard, env=env, timeout=120)
    assert proc.returncode != 0
    assert "401" in proc.stderr or "403" in proc.stderr or "auth" in proc.stderr.lower()
    with_token = cluster.fer("jobs", "status", "raysubmit_nothing", "--address", cluster.dashboard)
    assert "401" not in with_token.stderr and "auth" not in with_token.stderr.lower()
