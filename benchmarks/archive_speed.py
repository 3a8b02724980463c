"""Labelling 1080p archive footage: ``fer label`` frames/s beside the decode-only floor.

Builds 1080p H.264 videos (x264, PyAV) of the talking-head clip tiled 2x2 (4 faces of ~320 px
a frame, played forward then backward so no frame jumps), of 400 and 1,600 frames, and prints:

1. the decode floor on this machine: every frame decoded to BGR by OpenCV (one decoder per core,
   as ``fer label`` runs them, and one decoder with a thread per core) and by PyAV;
2. ``fer label`` at ``--detect-every`` 1 (every whole frame: the baseline) and the settings
   asked for: frames/s after start-up (the difference between the two videos' runs), and the
   faces found (face rows matching a true face box, of 4 a frame);
3. beside each, this machine's ceiling: all cores busy with nothing but the work itself, each
   stage timed in one process on one core (decode + detect + crop a frame, classify a face
   with the shipped model), i.e. cores / (decode-detect-crop + 4 x classify).

Usage: python benchmarks/archive_speed.py [--every 1,5,10] [--skip-floor]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer.video.faces import create_detector  # noqa: E402
from tests.tiles import matched, read_frames, tile, write_h264  # noqa: E402

SAMPLES = ROOT / "data" / "samples"
LENGTHS = (400, 1600)


def build(folder: Path, lengths: tuple[int, ...] = LENGTHS) -> tuple[dict[int, Path], np.ndarray]:
    """The 1080p videos of ``lengths`` frames, and the 4 true face boxes (the same in every frame)."""
    frames = read_frames(SAMPLES / "single_face.mp4")
    d = create_detector("yunet", min_face=40)(frames[0])[0]
    box = np.array([d.x, d.y, d.w, d.h])
    clip = frames + frames[::-1]
    truth = tile(frames[0], box, 2)[1]
    videos = {}
    for n in lengths:
        videos[n] = write_h264(folder / f"wide_{n}.mp4", (tile(clip[i % len(clip)], box, 2)[0] for i in range(n)))
    return videos, truth


def _decode_cv(path: str, threads: int) -> int:
    cap = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def _decode_av(path: str) -> int:
    import av

    with av.open(path) as c:
        c.streams.video[0].thread_type = "AUTO"
        return sum(1 for f in c.decode(video=0) if f.to_ndarray(format="bgr24") is not None)


def floor(path: Path) -> dict[str, float]:
    """Frames/s of decoding every frame to BGR, three ways."""
    cores = os.cpu_count() or 1
    out = {}
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(cores) as pool:
        n = sum(pool.starmap(_decode_cv, [(str(path), 1)] * cores))
    out[f"OpenCV, {cores} decoders of 1 thread"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = _decode_cv(str(path), cores)
    out[f"OpenCV, 1 decoder of {cores} threads"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = _decode_av(str(path))
    out["PyAV, 1 decoder, frame threads"] = n / (time.perf_counter() - t0)
    return out


def stage_costs(video: Path, every: int) -> float:
    """Milliseconds of one core to decode a frame, detect and crop its faces (one process)."""
    from fer.video.align import MARGIN
    from fer.video.faces import MIN_FACE
    from fer.video.plan import as_batch, probe_segments
    from fer.video.stages import DecodeDetect

    (seg,) = probe_segments({"path": str(video), "video_id": "v"}, segment_seconds=1e6)
    # fer label's defaults: the same detector input size (--min-face) as the runs beside it.
    decoder = DecodeDetect(detector="yunet", min_face=MIN_FACE, sample_fps=None, margin=MARGIN, align=True,
                           detect_every=every)  # fmt: skip
    t0 = time.perf_counter()
    for _ in decoder(as_batch(seg)):
        pass
    return (time.perf_counter() - t0) * 1000 / len(seg["times_ms"])


def classify_cost() -> float:
    """Milliseconds of one core to classify a face with the shipped model (batches of 32)."""
    from fer import bundle

    model = bundle.load(None, threads=1)
    faces = np.random.default_rng(0).integers(0, 256, (256, 48, 48, 1)).astype(np.float32)
    model.predict(faces[:32])
    t0 = time.perf_counter()
    model.predict(faces)
    return (time.perf_counter() - t0) * 1000 / len(faces)


def label(videos: dict[int, Path], truth: np.ndarray, every: int, work: Path) -> tuple[float, float]:
    """``fer label`` at ``--detect-every every``: (frames/s after start-up, share of faces found)."""
    seconds, found = [], 0.0
    for n, video in videos.items():
        out = work / f"out_{every}_{n}"
        t0 = time.perf_counter()
        # On Ray both: left to itself, the 400-frame job would run in this process (--engine auto).
        cmd = [sys.executable, "-m", "fer.cli", "label", str(video), "--out", str(out), "--detect-every", str(every),
               "--engine", "ray"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        seconds.append(time.perf_counter() - t0)
        df = pd.read_parquet(next((out / "timelines").glob("*.parquet")))
        faces = df[df.face_id >= 0]
        hits = [matched(truth, g[["x", "y", "w", "h"]].to_numpy()).sum() for _, g in faces.groupby("frame")]
        found = sum(hits) / (len(truth) * n)
    (short, long_), (n_short, n_long) = seconds, list(videos)
    return (n_long - n_short) / (long_ - short), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", default="1,5,10", help="--detect-every settings to run (1 is the baseline)")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="videos of 8 and 16 frames: seconds, for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    lengths = (8, 16) if args.smoke else LENGTHS
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        videos, truth = build(work, lengths)
        print(f"built {', '.join(map(str, lengths))}-frame 1080p H.264 videos in {time.perf_counter() - t0:.0f} s")
        if not args.skip_floor:
            print("\ndecode floor (every frame to BGR):")
            for name, fps in floor(videos[lengths[-1]]).items():
                print(f"  {name:<36}{fps:>8.1f} frames/s")
        cores, classify = os.cpu_count() or 1, classify_cost()
        print(f"\nclassify (shipped model, 1 core): {classify:.2f} ms a face")
        print(f"\nfer label, 4 faces a frame:\n  {'--detect-every':<16}{'frames/s':>10}{'faces found':>13}"
              f"{'decode+detect ms':>18}{'ceiling frames/s':>18}")  # fmt: skip
        for every in map(int, args.every.split(",")):
            fps, found = label(videos, truth, every, work)
            frame = stage_costs(videos[lengths[0]], every)
            ceiling = cores * 1000 / (frame + 4 * classify)
            print(f"  {every:<16}{fps:>10.1f}{found:>13.2%}{frame:>18.1f}{ceiling:>18.1f}")


if __name__ == "__main__":
    main()
