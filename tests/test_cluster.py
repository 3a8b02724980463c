"""A real two-node Ray cluster on loopback: jobs submitted with `fer submit`, token authentication enforced.

The nodes run with `RAY_AUTH_MODE=token` and a token of the test's own, on free ports (another Ray may be running
on the machine), and are torn down by killing only the processes of this cluster's temp dir, never `ray stop`.
"""

from __future__ import annotations

import contextlib
import json
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

from fer import timelines
from fer.video.inputs import video_id
from tests.conftest import ROOT, SAMPLES
from tests.mp4 import distinct_copy, looped

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _node_ports(ports: list[int]) -> list[str]:
    names = ["--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port",
             "--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port"]  # fmt: skip
    return [f"{name}={port}" for name, port in zip(names, ports, strict=True)]


def _pids_where(match) -> list[int]:
    """Pids whose command line or working directory satisfies ``match(cmdline, cwd)``.

    Ray renames its worker processes (``ray::...``), so their command line no longer names
    the session; their working directory (a job's unpacked working_dir) still does.
    """
    pids = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(pid_dir / "cwd")
        except OSError:
            continue
        if match(cmdline, cwd):
            pids.append(int(pid_dir.name))
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)


def _kill_cluster(temp_dir: str, procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    time.sleep(2)
    _kill(_pids_where(lambda cmd, cwd: temp_dir in cmd or cwd.startswith(temp_dir)))


class Cluster:
    def __init__(self, env: dict, dashboard: str, temp_dir: str):
        self.env, self.dashboard, self.temp_dir = env, dashboard, temp_dir
        self.procs: list[subprocess.Popen] = []

    def add_node(self, cpus: int) -> int:
        """Start one more worker node; return its node-manager port (which names its processes)."""
        ports = free_ports(6)
        # A directory of its own, as on a machine of its own: each node's agent re-extracts a job's
        # working_dir (removing what is there) into its temp dir, under a driver that may be importing from it.
        common = ["--block", "--disable-usage-stats", f"--temp-dir={self.temp_dir}/n{ports[3]}"]
        self.procs.append(
            subprocess.Popen(
                ["ray", "start", f"--address={self.gcs}", f"--num-cpus={cpus}", *_node_ports(ports), *common],
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        return ports[3]

    def kill_node(self, node_manager_port: int) -> int:
        """Kill a worker node's raylet and everything it runs, as a machine loss would."""
        port = str(node_manager_port)
        raylets = _pids_where(lambda cmd, cwd: "raylet" in cmd and f"node_manager_port={port}" in cmd)
        children = [p for p in _pids_where(lambda cmd, cwd: True) if _ppid(p) in raylets]
        _kill(raylets + children)
        return len(raylets)

    def submit(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "fer.cli", "submit", "--address", self.dashboard, "--no-pip", *args],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

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


@contextlib.contextmanager
def _cluster(head_cpus: int):
    """Head (``head_cpus`` CPUs) + worker (2 CPUs); every process gets the token."""
    temp_dir = tempfile.mkdtemp(prefix="fert", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    gcs, dash, client, *ports = free_ports(9)
    common = ["--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    head = subprocess.Popen(
        ["ray", "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", f"--num-cpus={head_cpus}", *_node_ports(ports[:6]), *common],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    c = Cluster(env, f"http://127.0.0.1:{dash}", temp_dir)
    c.gcs = f"127.0.0.1:{gcs}"
    c.procs.append(head)
    try:
        time.sleep(8)
        c.add_node(cpus=2)
        deadline = time.time() + 120
        while c.alive_nodes() < 2:
            assert time.time() < deadline, "the two-node cluster did not come up"
            time.sleep(3)
        yield c
    finally:
        _kill_cluster(temp_dir, c.procs)


@pytest.fixture(scope="module")
def cluster(s3):
    """Head (1 CPU) + worker (2 CPUs), with the S3 endpoint of ``s3`` in every process's environment."""
    with _cluster(head_cpus=1) as c:
        yield c


def test_label_job_through_fer_submit_writes_to_s3(cluster, s3, untrained_bundle):
    out = f"{s3}/cluster-labels"
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "--no-pip", "label",
        str(SAMPLES / "single_face.mp4"), str(SAMPLES / "no_face.mp4"), "--out", out,
        "--model", str(untrained_bundle), "--segment-seconds", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout
    job_id = next(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("submitted job"))
    assert cluster.fer("jobs", "status", job_id, "--address", cluster.dashboard).stdout.strip() == "SUCCEEDED"
    assert "2 done" in cluster.fer("jobs", "logs", job_id, "--address", cluster.dashboard).stdout
    df = timelines.read(out, videos=video_id(SAMPLES / "single_face.mp4"))
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
    assert proc.returncode == 2, proc.stderr[-2000:]  # a user error
    assert proc.stderr == (
        f"error: --address {cluster.dashboard}: the cluster requires a token; set RAY_AUTH_MODE=token and "
        "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token\n"
    )
    with_token = cluster.fer("jobs", "status", "raysubmit_nothing", "--address", cluster.dashboard)
    assert "token" not in with_token.stderr and "raysubmit_nothing" in with_token.stderr


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_label_job_survives_losing_a_worker_node(cluster, untrained_bundle, tmp_path):
    import cv2

    from fer.video import manifest

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(8):
        distinct_copy(SAMPLES / "face_noface.mov", videos / f"clip{i}.mov", i)
    victim = cluster.add_node(cpus=2)
    _wait_for(lambda: cluster.alive_nodes() >= 3, 120, "the extra node")
    out = tmp_path / "labels"
    job = cluster.submit(
        "label", str(videos), "--out", str(out), "--model", str(untrained_bundle), "--segment-seconds", "1"
    )
    # Kill the node once the job has finished some videos but not all.
    _wait_for(lambda: len(manifest.load(out)) >= 1 or job.poll() is not None, 300, "the first finished video")
    assert job.poll() is None, "the job ended before the node could be killed: give it more work"
    assert cluster.kill_node(victim) == 1
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-3000:]
    entries = manifest.load(out)
    assert len(entries) == 8 and all(e.status == "done" for e in entries.values())
    cap = cv2.VideoCapture(str(SAMPLES / "face_noface.mov"))
    frames = 0
    while cap.grab():
        frames += 1
    for e in entries.values():
        df = pd.read_parquet(e.output)
        assert df.frame.nunique() == frames  # every frame, once per face
        assert not df.duplicated(["frame", "face_id"]).any()


def test_training_job_survives_a_killed_worker(cluster, tiny_dataset, tmp_path):
    import json

    run_dir = tmp_path / "run"
    job = cluster.submit(
        "train", "--data", str(tiny_dataset), "--out", str(run_dir), "--arch", "small", "--epochs", "4",
        "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "32", "--max-failures", "2",
    )  # fmt: skip
    _wait_for(lambda: any(run_dir.glob("checkpoint_*/state.json")) or job.poll() is not None, 300, "a checkpoint")
    assert job.poll() is None, f"the job ended before a worker could be killed: {job.stdout.read()[-3000:]}"
    workers = _pids_where(lambda cmd, cwd: cmd.startswith("ray::RayTrainWorker") and cwd.startswith(cluster.temp_dir))
    assert workers, "no training worker of this cluster found"
    _kill(workers[-1:])
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-3000:]
    states = [json.loads(p.read_text()) for p in run_dir.glob("checkpoint_*/state.json")]
    final = max(states, key=lambda s: s["epochs_done"])
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4]
    assert final.get("resumed_at_epoch", 1) >= 2  # the restart began after the checkpoint, not at epoch 1


def test_a_submitted_job_can_be_stopped(cluster, untrained_bundle, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(6):
        distinct_copy(SAMPLES / "face_noface.mov", videos / f"clip{i}.mov", i)
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "--no-pip", "--no-wait", "label", str(videos),
        "--out", str(tmp_path / "out"), "--model", str(untrained_bundle),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    job_id = proc.stdout.split()[-1]
    status = lambda: cluster.fer("jobs", "status", job_id, "--address", cluster.dashboard).stdout.strip()  # noqa: E731
    _wait_for(lambda: status() in ("RUNNING", "SUCCEEDED", "FAILED"), 120, "the job to start")
    assert cluster.fer("jobs", "stop", job_id, "--address", cluster.dashboard).stdout.strip() in (
        "stopped",
        "not running",
    )
    _wait_for(lambda: status() in ("STOPPED", "SUCCEEDED", "FAILED"), 120, "the job to end")
    assert status() == "STOPPED"


def test_jobs_with_the_default_runtime_environment(cluster, untrained_bundle, tiny_dataset, tmp_path):
    """What every cluster user without a custom image runs: fer's dependencies installed by
    Ray's pip runtime environment (no --no-pip), for a label and a training job."""
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "label", str(SAMPLES / "single_face.mp4"),
        "--out", str(tmp_path / "labels"), "--model", str(untrained_bundle), timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout and "1 done" in proc.stdout
    proc = cluster.fer(
        "submit", "--address", cluster.dashboard, "train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"),
        "--arch", "small", "--epochs", "1", "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "32",
        timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.json").is_file() and "epoch 1/1" in proc.stdout


def _placed(c: Cluster) -> tuple[str, list[tuple[str, str]]]:
    """The cluster's head node id and every actor's (class name, node id), dead ones too."""
    code = (
        "import json, ray\nfrom ray.util.state import list_actors\nray.init(address='auto')\n"
        "head = [n['NodeID'] for n in ray.nodes() if n['Resources'].get('node:__internal_head__')]\n"
        "actors = [(a.class_name, a.node_id) for a in list_actors(limit=10000)]\n"
        "print(json.dumps({'head': head, 'actors': actors}))"
    )
    env = {**c.env, "RAY_ADDRESS": c.gcs}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    placed = json.loads(out.stdout.strip().splitlines()[-1])
    (head,) = placed["head"]
    return head, [tuple(a) for a in placed["actors"]]


def test_stages_run_where_the_cpus_are_and_decoders_grow_with_the_cluster(untrained_bundle, tmp_path):
    """The shipped KubeRay and AWS heads have 0 CPUs for work: classifiers on the CPUs are placed
    on nodes that have them, and a node added during a job gets decoders (no --decoders)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    looped(SAMPLES / "face_noface.mov", videos / "long.mp4", 4)
    for i in range(8):  # ~5,400 frames: a minute and more of work on 2 CPUs, most of it after the node joins
        distinct_copy(videos / "long.mp4", videos / f"long{i}.mp4", i)
    (videos / "long.mp4").unlink()
    with _cluster(head_cpus=0) as c:
        job = c.submit("label", str(videos), "--out", str(tmp_path / "out"), "--model", str(untrained_bundle),
                       "--segment-seconds", "2")  # fmt: skip
        decoding = lambda: _pids_where(lambda cmd, cwd: "DecodeDetect" in cmd and cwd.startswith(c.temp_dir))  # noqa: E731
        _wait_for(lambda: decoding() or job.poll() is not None, 300, "the first decoders")
        started = len(decoding())
        c.add_node(cpus=2)
        output, _ = job.communicate(timeout=900)
        assert job.returncode == 0 and "8 done" in output, output[-3000:]
        head, actors = _placed(c)
    decoders = {node for name, node in actors if "DecodeDetect" in name}
    classifiers = {node for name, node in actors if "Classify" in name}
    assert classifiers and head not in classifiers | decoders, actors
    assert started <= 2 and len(decoders) == 2, actors  # the new node's CPUs got decoders too
