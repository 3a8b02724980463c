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
FERPLUS = SHARED / "ferplus"
SAMPLES = ROOT / "data" / "samples"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background (`nohup pytest &`) inherits Ctrl-C ignored, and so would every
# fer it starts (Python keeps an inherited SIG_IGN): the Ctrl-C tests need what a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session) -> None:
    """With ``FER_REQUIRE_SHARED=1`` (as ``.ci/run`` sets it) missing shared data fails the run:
    the tests that read it would otherwise skip, and a CI without it would pass."""
    missing = [str(p) for p in (FER2013, FERPLUS, SHARED / "videos", SHARED.parent / "models") if not p.is_dir()]
    if os.environ.get("FER_REQUIRE_SHARED") == "1" and missing:
        pytest.exit(f"FER_REQUIRE_SHARED=1 and shared data is missing: {', '.join(missing)}", returncode=1)


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


#: FER+'s vote columns (``fer2013new.csv``), and a face's votes for each of our classes.
FERPLUS_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
FERPLUS_NAMES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
                 "surprise": "surprise", "neutral": "neutral"}  # fmt: skip


def write_ferplus_dataset(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """Write a FER+ root as FER+'s own script lays it out: ``FER2013Train/`` and
    ``FER2013Valid/`` PNGs, ``fer2013new.csv`` and ``fer2013_join.csv``.

    Per split and class, ``per_class[class]`` faces with 7 votes for the class, 2 for neutral
    (1 for happy for neutral faces) and 1 contempt (an outlier, dropped); every fourth face's
    FER-2013 label (in the join) is ``sad``, the rest agree. Each split also gets one face of
    mostly ``NF`` votes (left out), one without a majority (4 angry, 4 sad, 2 fear) and one
    row with no image (FER+ dropped it)."""
    rng = np.random.default_rng(seed)
    votes, join = (
        [",".join(("Usage", "Image name", *FERPLUS_COLUMNS))],
        ["ferplus_split,ferplus_png,fer2013_class,confident"],
    )
    for folder, usage in (("FER2013Train", "Training"), ("FER2013Valid", "PublicTest")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        rows = [(name, "face") for name, k in per_class.items() for _ in range(k)] + [("angry", "nf"), ("sad", "tie")]
        for n, (name, kind) in enumerate(rows):
            png = f"fer{n:07d}.png"
            cv2.imwrite(str(root / folder / png), synthetic_faces(1, EMOTIONS.index(name), rng)[0])
            count = dict.fromkeys(FERPLUS_COLUMNS, 0)
            if kind == "nf":
                count.update(NF=8, anger=2)
            elif kind == "tie":
                count.update(anger=4, sadness=4, fear=2)
            else:
                count.update({FERPLUS_NAMES[name]: 7, "contempt": 1})
                count["happiness" if name == "neutral" else "neutral"] += 2
            votes.append(",".join((usage, png, *(str(count[c]) for c in FERPLUS_COLUMNS))))
            fer2013 = "sad" if n % 4 == 3 else name
            join.append(f"{folder},{png},{fer2013},1")
        votes.append(",".join((usage, "", *["0"] * 9, "10")))
    (root / "fer2013new.csv").write_text("\n".join(votes) + "\n")
    (root / "fer2013_join.csv").write_text("\n".join(join) + "\n")
    return root


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
def tiny_ferplus(tmp_path_factory) -> Path:
    """A FER+-shaped root (see :func:`write_ferplus_dataset`) with one tiny minority class."""
    counts = {name: 16 for name in EMOTIONS}
    counts["disgust"] = 4
    return write_ferplus_dataset(tmp_path_factory.mktemp("ferplus") / "ferplus", counts)


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
