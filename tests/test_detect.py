"""Face detection on real decoded frames: wide shots, landmarks, alignment, images as inputs."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest

from fer.errors import FerError
from fer.video import manifest
from fer.video.align import alignment, crop_face
from fer.video.faces import YUNET_MIN_PX, Detection, YuNet, create_detector
from fer.video.pipeline import LabelConfig
from tests.conftest import SAMPLES, fer_cli
from tests.tiles import grid_for, matched, read_frames, tile

DEFAULT_MIN_FACE = LabelConfig(inputs=(), out="").min_face


@pytest.fixture(scope="module")
def references():
    """Two frames of the talking-head clip with their face boxes, found at full size."""
    yunet = create_detector("yunet", min_face=40)
    out = []
    for frame in read_frames(SAMPLES / "single_face.mp4", step=30, limit=2):
        (d,) = yunet(frame)
        out.append((frame, np.array([d.x, d.y, d.w, d.h], np.float32)))
    return out


def boxes(found) -> np.ndarray:
    return np.array([[d.x, d.y, d.w, d.h] for d in found], np.float32).reshape(-1, 4)


@pytest.mark.parametrize("face_px", [212, 80, 40, 32, 25])
def test_default_detector_finds_the_faces_of_wide_shots(references, face_px):
    detect = create_detector("yunet", min_face=DEFAULT_MIN_FACE)
    for frame, box in references:
        canvas, truth = tile(frame, box, grid_for(face_px, max(box[2], box[3]), frame.shape[1]))
        found = [d for d in detect(canvas) if d.size >= DEFAULT_MIN_FACE]
        assert matched(truth, boxes(found)).mean() >= 0.95, (face_px, len(found), len(truth))
        assert len(found) <= len(truth) * 1.02  # no crowd of spurious boxes


def test_min_face_sets_the_detection_scale(references):
    assert YuNet(min_face=40).input_size(1920, 1080) == (
        round(1920 * YUNET_MIN_PX / 40),
        round(1080 * YUNET_MIN_PX / 40),
    )
    assert YuNet(min_face=8).input_size(1920, 1080) == (1920, 1080)  # never enlarged
    frame, box = references[0]
    canvas, truth = tile(frame, box, grid_for(25, max(box[2], box[3]), frame.shape[1]))
    # Asked for faces of 80 px and more, the detector looks at a frame where 25-px faces are too small to find.
    coarse = YuNet(min_face=80)(canvas)
    assert matched(truth, boxes(coarse)).mean() < 0.1
    with pytest.raises(FerError, match="--min-face: must be a whole number >= 1; got 0"):
        LabelConfig(inputs=("x",), out="o", min_face=0)


def test_landmarks_lie_inside_their_boxes(references):
    frame, box = references[0]
    canvas, _ = tile(frame, box, 6)
    found = create_detector("yunet")(canvas)
    assert len(found) == 36
    for d in found:
        m = d.landmarks
        assert np.isfinite(m).all()
        assert (m[:, 0] >= d.x).all() and (m[:, 0] <= d.x + d.w).all()
        assert (m[:, 1] >= d.y).all() and (m[:, 1] <= d.y + d.h).all()
        assert m[0, 0] < m[1, 0] and m[3, 0] < m[4, 0] and m[:2, 1].max() < m[3:, 1].min()


def eye_angle(crop: np.ndarray) -> float:
    """Angle of the eye line (degrees) found by YuNet in a 48x48 crop, upscaled 8x and
    detected at full size (YuNet's landmarks of faces under ~150 px lean towards upright)."""
    big = cv2.copyMakeBorder(crop, 24, 24, 24, 24, cv2.BORDER_REPLICATE)
    big = cv2.resize(big, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
    (d,) = create_detector("yunet", min_face=YUNET_MIN_PX)(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    (lx, ly), (rx, ry) = d.landmarks[:2]
    return math.degrees(math.atan2(ry - ly, rx - lx))


@pytest.mark.parametrize("tilt", [-20, 20])
def test_aligned_crops_are_level(references, tilt):
    frame, _ = references[0]
    h, w = frame.shape[:2]
    tilted = cv2.warpAffine(frame, cv2.getRotationMatrix2D((w / 2, h / 2), tilt, 1.0), (w, h))
    (d,) = create_detector("yunet")(tilted)
    m = alignment(d.landmarks)
    eyes = d.landmarks[:2] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3  # the transform levels the detected eyes exactly
    # A detector run on the crops agrees (within its landmarks' few degrees of noise):
    assert abs(eye_angle(crop_face(tilted, d))) < 8
    assert abs(eye_angle(crop_face(tilted, d, align=False)) + tilt) < 8  # the box crop keeps the tilt


def test_large_faces_are_shrunk_without_aliasing(references):
    frame, _ = references[0]
    (small,) = create_detector("yunet")(frame)
    big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    large = Detection(small.x * 4, small.y * 4, small.w * 4, small.h * 4, small.score, small.landmarks * 4)
    a, b = crop_face(frame, small).astype(float), crop_face(big, large).astype(float)
    assert np.abs(a - b).mean() < 3  # the same face at 4x the pixels gives nearly the same crop
    naive = cv2.warpAffine(big, alignment(large.landmarks), (48, 48), flags=cv2.INTER_LINEAR)
    assert np.abs(cv2.cvtColor(naive, cv2.COLOR_BGR2GRAY) - a).mean() > np.abs(a - b).mean()


def test_images_and_image_folders_are_inputs(untrained_bundle, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    frame = read_frames(SAMPLES / "single_face.mp4", limit=1)[0]
    cv2.imwrite(str(photos / "face.jpg"), frame)
    cv2.imwrite(str(photos / "sub" / "face.png"), cv2.resize(frame, (1280, 720)))
    cv2.imwrite(str(photos / "empty.webp"), np.full((200, 300, 3), 128, np.uint8))
    (photos / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (photos / "._face.jpg").write_bytes(b"\0\0")  # a macOS resource fork: not an image
    shutil.copy(SAMPLES / "single_face.mp4", photos / "clip.mp4")
    out = tmp_path / "out"
    proc = fer_cli("label", str(photos), "--out", str(out), "--model", str(untrained_bundle))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    entries = {e.path.rsplit("/", 1)[-1]: e for e in manifest.load(out).values()}
    assert set(entries) == {"face.jpg", "face.png", "empty.webp", "corrupt.png", "clip.mp4"}
    assert entries["corrupt.png"].status == "failed" and "image" in entries["corrupt.png"].reason
    for name in ("face.jpg", "face.png"):
        df = pd.read_parquet(entries[name].output)
        assert entries[name].frames == 1 and len(df) == 1 and df.face_id[0] == 0 and df.time_s[0] == 0
        assert df.eye_left_x.notna().all()
    scale = pd.read_parquet(entries["face.png"].output).w[0] / pd.read_parquet(entries["face.jpg"].output).w[0]
    assert 1.8 < scale < 2.2  # boxes in each image's own pixels
    assert entries["empty.webp"].status == "done" and entries["empty.webp"].faces == 0
    assert entries["clip.mp4"].status == "done" and entries["clip.mp4"].frames == 72


def test_photos_take_the_image_path_and_label_as_on_ray(untrained_bundle, tmp_path):
    """A folder of photos runs in this process by default (a decoder per core, classified and
    aggregated in batches) and gives what each photo gives as a video on Ray."""
    from fer import aggregates, timelines
    from fer.labels import EMOTIONS
    from fer.storage import Location
    from fer.video.engines import runs_here
    from fer.video.inputs import resolve_inputs
    from fer.video.pipeline import run

    photos = tmp_path / "photos"
    photos.mkdir()
    frames = read_frames(SAMPLES / "carphone_pristine.mp4", step=7, limit=15)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(photos / f"p{i:02d}.jpg"), cv2.resize(frame, (260, 360)) if i % 2 else frame)
    cv2.imwrite(str(photos / "blank.png"), np.full((360, 260, 3), 90, np.uint8))
    here = LabelConfig(inputs=(str(photos),), out=str(tmp_path / "here"), model=str(untrained_bundle), batch_size=4)
    todo = [(v, "") for v in resolve_inputs(here.inputs)]
    assert runs_here(here, todo) and not runs_here(replace(here, address="ray://cluster:10001"), todo)
    ray = replace(here, out=str(tmp_path / "ray"), engine="ray")
    for config in (here, ray):
        summary = run(config, progress=None)
        assert summary.count("done") == 16 and summary.frames == 16, summary.totals()
    for name in ("here", "ray"):
        assert len(list((tmp_path / name / "timelines").glob("*.parquet"))) == 16
    mine, theirs = timelines.read(tmp_path / "here"), timelines.read(tmp_path / "ray")
    key = ["video_id", "frame", "face_id"]
    mine, theirs = mine.sort_values(key).reset_index(drop=True), theirs.sort_values(key).reset_index(drop=True)
    assert (mine.face_id >= 0).sum() >= 14
    pd.testing.assert_frame_equal(mine.drop(columns=list(EMOTIONS) + ["confidence"]),
                                  theirs.drop(columns=list(EMOTIONS) + ["confidence"]))  # fmt: skip
    np.testing.assert_allclose(mine[list(EMOTIONS)], theirs[list(EMOTIONS)], atol=1e-5)
    for timeline in (tmp_path / "here" / "timelines").glob("*.parquet"):  # each photo's own aggregates
        agg = pd.read_parquet(aggregates.location(Location.parse(str(timeline))).path)
        assert set(agg.video_id) == {timeline.stem}
    again = run(here, progress=None)
    assert again.count("skipped") == 16  # resumable photo by photo


def test_evaluate_detect_on_uncropped_images(tmp_path):
    frame = read_frames(SAMPLES / "single_face.mp4", limit=1)[0]
    for name in ("happy", "sad"):
        (tmp_path / "val" / name).mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "val" / "happy" / f"{i}.jpg"), frame)
    cv2.imwrite(str(tmp_path / "val" / "sad" / "blank.jpg"), np.full((300, 300, 3), 90, np.uint8))
    proc = fer_cli("evaluate", "--data", str(tmp_path), "--detect")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "faces found in 3 of 4 images (1 missed)" in proc.stdout
