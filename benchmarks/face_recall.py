"""Face detection on wide shots: recall by face size, false detections and speed, every detector.

Builds 1080p frames by tiling the sample talking-head clips n x n (faces from ~20 to ~320
pixels, the tile layout is the ground truth; see tests/tiles.py) and prints, side by side
for every registered detector at ``fer label``'s default ``--min-face``:

1. recall by face-size bucket on the tiled frames;
2. false detections per 1,000 frames on the no-face clip and on the cartoon clip;
3. detection frames/s on 1080p frames with 9 faces (one thread);
4. the cost of ``--min-face`` for the default detector: its input size at 1080p, recall
   and frames/s for several settings;
5. ``fer label`` end to end on 1080p videos with 4 and 9 faces: frames/s after start-up
   (the difference between a 1,600- and a 400-frame video), with the default settings.

Usage: python benchmarks/face_recall.py [--frames 3] [--skip-label] [--detectors yunet,blazeface]
       [--min-faces 12,16,20,24,32,48]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer.video.faces import DEFAULT_DETECTOR, DETECTORS, create_detector  # noqa: E402
from fer.video.pipeline import LabelConfig  # noqa: E402
from tests.tiles import CANVAS, grid_for, matched, read_frames, tile, write_video  # noqa: E402

SAMPLES = ROOT / "data" / "samples"
FACE_SIZES = (320, 212, 160, 106, 80, 53, 40, 32, 28, 25, 22)
BUCKETS = ((20, 24), (24, 32), (32, 48), (48, 96), (96, 400))
NO_FACE_CLIPS = ("no_face.mp4", "bigbuckbunny.mp4")


def reference_frames(n_frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, face box) pairs from the talking-head clips; boxes found at full size by YuNet."""
    yunet = create_detector("yunet", min_face=40)
    out = []
    for clip in ("single_face.mp4", "face_noface.mov"):
        frames = read_frames(SAMPLES / clip, step=9)
        with_face = [(f, d) for f in frames if len(d := yunet(f)) == 1]
        for f, (d,) in with_face[:: max(1, len(with_face) // n_frames)][:n_frames]:
            out.append((f, np.array([d.x, d.y, d.w, d.h], np.float32)))
    return out


def recall_table(names: list[str], refs, min_face: int) -> dict[str, dict[tuple, tuple[int, int]]]:
    """Per detector, per size bucket: (found, total)."""
    out = {}
    for name in names:
        det = create_detector(name, min_face=min_face)
        counts = {b: [0, 0] for b in BUCKETS}
        for frame, box in refs:
            for px in FACE_SIZES:
                canvas, truth = tile(frame, box, grid_for(px, max(box[2], box[3]), frame.shape[1]))
                found = [d for d in det(canvas) if d.size >= min_face]
                hit = matched(truth, np.array([[d.x, d.y, d.w, d.h] for d in found]).reshape(-1, 4))
                size = float(np.maximum(truth[0, 2], truth[0, 3]))
                for lo, hi in BUCKETS:
                    if lo <= size < hi:
                        counts[(lo, hi)][0] += int(hit.sum())
                        counts[(lo, hi)][1] += len(hit)
        out[name] = {b: tuple(c) for b, c in counts.items()}
    return out


def false_detections(names: list[str], min_face: int) -> dict[str, dict[str, float]]:
    """Per detector, per face-free clip: detections per 1,000 frames."""
    out = {}
    for name in names:
        det = create_detector(name, min_face=min_face)
        out[name] = {}
        for clip in NO_FACE_CLIPS:
            frames = read_frames(SAMPLES / clip)
            found = sum(sum(d.size >= min_face for d in det(f)) for f in frames)
            out[name][clip] = 1000 * found / len(frames)
    return out


def frames_per_second(det, frame: np.ndarray, seconds: float = 5.0) -> float:
    """Frames ``det`` processes per second, one thread."""
    cv2.setNumThreads(1)
    det(frame)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        det(frame)
        n += 1
    return n / (time.perf_counter() - t0)


def detection_speed(names: list[str], refs, min_face: int) -> dict[str, float]:
    """Per detector: 1080p frames with 9 faces detected per second, one thread."""
    frame, box = refs[0]
    canvas, _ = tile(frame, box, 3)
    return {name: frames_per_second(create_detector(name, min_face=min_face), canvas) for name in names}


def min_face_costs(refs, settings: list[int]) -> None:
    """Print the default detector's input size, recall and speed at each ``--min-face``."""
    frame, box = refs[0]
    canvas, _ = tile(frame, box, 3)
    print(f"\n{DEFAULT_DETECTOR} by --min-face (1080p):")
    print(f"{'--min-face':<12}{'input':>11}" + "".join(f"{f'{lo}-{hi} px':>12}" for lo, hi in BUCKETS) + f"{'fps':>8}")
    for m in settings:
        det = create_detector(DEFAULT_DETECTOR, min_face=m)
        recall = recall_table([DEFAULT_DETECTOR], refs, m)[DEFAULT_DETECTOR]
        size = "x".join(map(str, det.input_size(*CANVAS))) if hasattr(det, "input_size") else "-"
        cells = "".join(f"{100 * f / t:>11.1f}%" if lo >= m else f"{'-':>12}" for (lo, hi), (f, t) in recall.items())
        print(f"{m:<12}{size:>11}{cells}{frames_per_second(det, canvas):>8.1f}")


def label_speed(workdir: Path, refs, grid: int, length: int = 100) -> tuple[float, float, int, int]:
    """``fer label`` on a 1080p video with ``grid``^2 faces of 4 and 16 x ``length`` frames (400
    and 1,600: 16 and 64 s, both long enough to keep both decoders busy): (seconds, seconds,
    frames, frames)."""
    frames = [tile(f, b, grid)[0] for f, b in refs]
    clip = [frames[i % len(frames)] for i in range(length)]
    times = []
    for k in (4, 16):
        video = write_video(workdir / f"wide{grid}_{k}x.mp4", clip * k)
        out = workdir / f"out{grid}_{k}x"
        t0 = time.perf_counter()
        # On Ray both: left to itself, the 400-frame job would run in this process (--engine auto).
        subprocess.run([sys.executable, "-m", "fer.cli", "label", str(video), "--out", str(out), "--engine", "ray"],
                       check=True, capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - t0)
    return times[0], times[1], len(clip) * 4, len(clip) * 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="source frames per clip (each tiled at every size)")
    parser.add_argument("--detectors", default=",".join(DETECTORS.names()))
    parser.add_argument("--skip-label", action="store_true", help="skip the end-to-end fer label run")
    parser.add_argument("--min-faces", default="12,16,20,24,32,48", help="--min-face settings to cost")
    parser.add_argument("--smoke", action="store_true", help="YuNet, 1 frame, no fer label: for the tests")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.frames, args.detectors, args.min_faces, args.skip_label = 1, "yunet", "20", True
    names = args.detectors.split(",")
    min_face = LabelConfig(inputs=(), out="").min_face
    refs = reference_frames(args.frames)

    print(f"1080p tiled frames: {len(refs)} source frames x {len(FACE_SIZES)} face sizes; --min-face {min_face}\n")
    recall = recall_table(names, refs, min_face)
    falses = false_detections(names, min_face)
    speed = detection_speed(names, refs, min_face)
    header = f"{'detector':<16}" + "".join(f"{f'{lo}-{hi} px':>12}" for lo, hi in BUCKETS)
    header += "".join(f"{'false/1k ' + c.split('.')[0]:>22}" for c in NO_FACE_CLIPS) + f"{'det fps 1080p':>15}"
    print(header)
    for name in names:
        row = f"{name:<16}"
        for b in BUCKETS:
            found, total = recall[name][b]
            row += f"{100 * found / max(total, 1):>11.1f}%"
        row += "".join(f"{falses[name][c]:>22.1f}" for c in NO_FACE_CLIPS)
        print(row + f"{speed[name]:>15.1f}")

    min_face_costs(refs, [int(m) for m in args.min_faces.split(",")])
    if not args.skip_label:
        print(f"\nfer label, default settings ({DEFAULT_DETECTOR}), 1080p video (MPEG-4), 400 and 1,600 frames:")
        for grid in (2, 3):
            with tempfile.TemporaryDirectory() as d:
                t1, t4, f1, f4 = label_speed(Path(d), refs, grid)
            print(
                f"{grid * grid} faces per frame: {f1 / t1:.1f} frames/s end to end at {f1} frames ({t1:.1f} s), "
                f"{f4 / t4:.1f} at {f4}; after start-up (difference): {(f4 - f1) / (t4 - t1):.1f} frames/s"
            )


if __name__ == "__main__":
    main()
