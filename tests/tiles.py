"""Wide-shot test footage with known faces: a talking-head clip tiled over a 1080p frame.

Tiling an n x n grid of the 640x360 clip over 1920x1080 gives n^2 faces of about
212 / (n / 3) pixels each, with the tile layout as the ground truth: the face box of the
clip (found once at full size, where the face is ~200 px) scaled into every tile. Used by
the detection tests and ``benchmarks/face_recall.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np

CANVAS = (1920, 1080)


def read_frames(path: str | Path, step: int = 1, limit: int | None = None) -> list[np.ndarray]:
    """Every ``step``-th decoded frame of a clip (at most ``limit``)."""
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(frame)
        i += 1
    cap.release()
    return frames


def grid_for(face_px: float, source_face_px: float, source_width: int = 640) -> int:
    """The grid size n whose tiles show a face of about ``face_px`` pixels."""
    return max(1, round(source_face_px * CANVAS[0] / source_width / face_px))


def tile(frame: np.ndarray, box: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` tiled n x n over a 1080p canvas, and the ``(n*n, 4)`` x, y, w, h face boxes.

    ``box`` is the face's box in ``frame``. Tiles keep the frame's aspect ratio (16:9 clips
    fill the canvas exactly); the rest of the canvas is black.
    """
    h, w = frame.shape[:2]
    tw, th = CANVAS[0] // n, min(CANVAS[1] // n, round(CANVAS[0] // n * h / w))
    small = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((CANVAS[1], CANVAS[0], 3), np.uint8)
    canvas[: th * n, : tw * n] = np.tile(small, (n, n, 1))
    s = tw / w
    ys, xs = np.mgrid[0:n, 0:n]
    boxes = np.stack(
        [
            xs.ravel() * tw + box[0] * s,
            ys.ravel() * th + box[1] * s,
            np.full(n * n, box[2] * s),
            np.full(n * n, box[3] * s),
        ],
        axis=1,
    )
    return canvas, boxes.astype(np.float32)


def matched(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Which ``truth`` boxes (x, y, w, h) a ``found`` box matches: its centre inside the true
    box and its size within a factor of two (detectors frame faces differently, so IoU is
    too strict a test across detectors)."""
    if len(found) == 0:
        return np.zeros(len(truth), bool)
    cx, cy = found[:, 0] + found[:, 2] / 2, found[:, 1] + found[:, 3] / 2
    size = np.maximum(found[:, 2], found[:, 3])
    tx0, ty0 = truth[:, 0:1], truth[:, 1:2]
    tsize = np.maximum(truth[:, 2:3], truth[:, 3:4])
    inside = (cx > tx0) & (cx < tx0 + truth[:, 2:3]) & (cy > ty0) & (cy < ty0 + truth[:, 3:4])
    similar = (size > tsize / 2) & (size < tsize * 2)
    return (inside & similar).any(axis=1)


def write_h264(path: str | Path, frames, fps: int = 25) -> Path:
    """Encode BGR frames (any iterable) as H.264 in MP4 with PyAV's libx264, as cameras and
    archives deliver video (CRF 23, B-frames and CABAC; x264's veryfast preset, which encodes
    1080p ~4x faster than its default)."""
    import av

    with av.open(str(path), "w") as out:
        frames = iter(frames)
        first = next(frames)
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast"}
        for frame in itertools.chain([first], frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode())
    return Path(path)


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Encode frames as an MPEG-4 video with OpenCV (no external encoder needed)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return Path(path)
