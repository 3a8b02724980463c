"""Shared fixtures: a local Ray, small FER-2013-style datasets the tests write, paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.fs as pafs
import pytest

from fer.labels import EMOTIONS, FACE_SIZE

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FER2013 = SHARED / "fer2013"
SAMPLES = ROOT / "data" / "samples"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background (`nohup pytest &`) inherits Ctrl-C ignored, and so would every
# fer it starts (Python keeps an inherited SIG_IGN): the Ctrl-C tests need what a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)


def fer_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the ``fer`` command line as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "fer.cli", *args], capture_output=True, text=True)


def synthetic_faces(n: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """Faces a small CNN can tell apart: noise plus a bright bar whose position encodes the class."""
    images = rng.integers(0, 90, (n, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    row = 3 + label * 6
    images[:, row : row + 4, 6:42] = 230
    return images


def write_folder_dataset(root: Path, per_class: dict[str, int], splits=("train", "val"), seed: int = 0) -> Path:
    """Write ROOT/<split>/<class>/*.png with ``per_class[class]`` images per split."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for name, n in per_class.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(synthetic_faces(n, EMOTIONS.index(name.lower()), rng)):
                cv2.imwrite(str(d / f"{split}_{i:04d}.png"), img)
    return root


def write_csv_dataset(path: Path, per_usage: dict[str, int], seed: int = 0) -> Path:
    """Write a Kaggle-style FER-2013 CSV with ``per_usage[Usage]`` rows per class."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, n in per_usage.items():
        for label in range(len(EMOTIONS)):
            for img in synthetic_faces(n, label, rng):
                lines.append(f"{label},{' '.join(map(str, img.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session, started the way fer starts it."""
    import ray

    from fer._ray import connect

    connect(None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A balanced-enough 7-class folder dataset with one tiny minority class."""
    counts = {name: 24 for name in EMOTIONS}
    counts["disgust"] = 6
    return write_folder_dataset(tmp_path_factory.mktemp("tiny") / "faces", counts)


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory) -> Path:
    """A real bundle of the small architecture (untrained: the pipeline tests check
    structure, not accuracy, and must not wait for training). Seeded: the same weights in
    every run, so a test that reads its (near-uniform) probabilities cannot pass or fail by draw."""
    from fer import bundle
    from fer._tf import keras
    from fer.train import models

    keras.utils.set_random_seed(0)
    return bundle.save(
        models.build("small"),
        tmp_path_factory.mktemp("bundle") / "small",
        {"name": "test-small", "architecture": "small"},
    )


@pytest.fixture(scope="session")
def s3():
    """An S3 endpoint with bucket ``fer-test``, configured through the standard AWS
    environment variables (what a user on a real cluster sets)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs, _ = pafs.FileSystem.from_uri("s3://fer-test?allow_bucket_creation=true")
    fs.create_dir("fer-test")
    yield "s3://fer-test"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
