"""--detect-every: whole frames every N frames and at cuts, windows around the faces between."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer.video.boxes import corners, iou
from fer.video.faces import create_detector
from fer.video.pipeline import LabelConfig, run
from fer.video.windows import Scheduled
from tests.conftest import SAMPLES, fer_cli
from tests.tiles import matched, read_frames, tile


class Counting:
    """YuNet, counting its whole-frame calls."""

    def __init__(self):
        self.yunet = create_detector("yunet")
        self.whole = 0

    def __call__(self, frame):
        self.whole += 1
        return self.yunet(frame)

    def detect(self, frame, size):
        return self.yunet.detect(frame, size)


def boxes(found) -> np.ndarray:
    return np.array([[d.x, d.y, d.w, d.h] for d in found], np.float32).reshape(-1, 4)


@pytest.fixture(scope="module")
def wide():
    """30 consecutive frames of the talking-head clip tiled 3x3 over 1080p (faces of ~100 px)."""
    frames = read_frames(SAMPLES / "single_face.mp4", limit=30)
    d = create_detector("yunet")(frames[0])[0]
    return [tile(f, np.array([d.x, d.y, d.w, d.h]), 3) for f in frames]


def test_windows_find_every_face_with_the_whole_frame_boxes(wide):
    detector = Counting()
    scheduled = Scheduled(detector, every=10)
    whole = create_detector("yunet")
    for i, (frame, truth) in enumerate(wide):
        found = scheduled(frame, t=i / 30)
        assert matched(truth, boxes(found)).all() and len(found) == len(truth)
        overlap = iou(corners(boxes(found)), corners(boxes(whole(frame))))
        assert (overlap.max(axis=1) > 0.8).all()  # the box the whole frame gives, near enough
        assert all(np.isfinite(d.landmarks).all() for d in found)
    assert detector.whole == 3  # frames 0, 10 and 20
    sparse = Counting()
    scheduled = Scheduled(sparse, every=10)
    for i, (frame, _) in enumerate(wide[:5]):
        scheduled(frame, t=i * 0.5)  # --fps 2: windows would lose faces between samples
    assert sparse.whole == 5


def test_a_face_that_appears_is_found_at_the_next_whole_frame_or_cut(wide):
    blank = np.zeros_like(wide[0][0])
    scheduled = Scheduled(Counting(), every=4)
    frames = [blank, blank, wide[0][0], wide[1][0], wide[2][0]]
    found = [len(scheduled(f, t=i / 30)) for i, f in enumerate(frames)]
    assert found == [0, 0, 0, 0, 9]  # whole frames at 0 and 4
    scheduled.reset()
    found = [len(scheduled(f, cut=c, t=i / 30)) for i, (f, c) in enumerate([(blank, False), (wide[0][0], True),
                                                                           (wide[1][0], False)])]  # fmt: skip
    assert found == [0, 9, 9]


def test_label_with_detect_every_finds_the_faces_every_frame_finds(untrained_bundle, tmp_path):
    clip = str(SAMPLES / "single_face.mp4")
    runs = {}
    for every in (1, 5):
        config = LabelConfig(inputs=(clip,), out=str(tmp_path / str(every)), model=str(untrained_bundle),
                             detect_every=every)  # fmt: skip
        runs[every] = pd.read_parquet(run(config, progress=None).entries[0].output).set_index("frame")
    every, windowed = runs[1], runs[5]
    assert (windowed.face_id >= 0).sum() == (every.face_id >= 0).sum() == 72
    overlap = iou(corners(every[["x", "y", "w", "h"]].to_numpy()), corners(windowed[["x", "y", "w", "h"]].to_numpy()))
    assert np.diag(overlap).min() > 0.8


def test_detect_every_needs_a_detector_that_takes_windows(tmp_path):
    proc = fer_cli("label", str(SAMPLES / "single_face.mp4"), "--out", str(tmp_path), "--detector", "blazeface",
                   "--detect-every", "5")  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --detect-every 5: the blazeface detector detects whole frames only; use --detector yunet, or "
        "--detect-every 1"
    )


def test_the_default_follows_the_detector(tmp_path):
    config = {"inputs": (str(SAMPLES),), "out": str(tmp_path)}
    assert LabelConfig(**config).detect_every == 5
    assert LabelConfig(**config, detector="blazeface").detect_every == 1
    assert LabelConfig(**config, detect_every=2).settings_key()["detect_every"] == 2
