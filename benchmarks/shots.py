"""Shot detection through ``fer label``: cut recall and precision, and face ids across cuts.

Builds clips of shots of the sample clips joined by hard cuts at known frames (tests/cuts.py:
0.8-2.5 s shots, a face on both sides of some cuts, on one or neither side of others) and clips
where every other cut is a fade through black, adds face_noface.mov (its own cut at frame 73),
labels them with the default settings at every frame and at ``--fps 5`` (1-s segments, so
segment boundaries fall inside shots and on cuts), and prints for each kind of clip, beside the
tracker without shots on the same rows (the baseline):

1. cuts found at the first sampled frame of each new shot: recall and precision;
2. face ids that span two shots.

Usage: python benchmarks/shots.py [--clips 10] [--fade-clips 5] [--shots 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer.video.pipeline import LabelConfig, run  # noqa: E402
from fer.video.track import assign_ids  # noqa: E402
from tests import cuts  # noqa: E402

#: face_noface.mov's own cut, from a woman talking to the empty room (frame 72, between them, is black).
REAL = (cuts.SAMPLES / "face_noface.mov", [73])


def score(df: pd.DataFrame, truth: list[int]) -> tuple[int, int, int, int, int]:
    """``(true cuts, found, right, ids across cuts, ids across cuts without shots)`` of one timeline."""
    frames = df.drop_duplicates("frame")
    sampled = frames.frame.to_numpy()
    expected = {int(sampled[np.searchsorted(sampled, c)]) for c in truth if c <= sampled[-1]}
    found = set(frames.frame[frames.shot.diff() > 0].tolist())
    faces = df.face_id >= 0
    boxes = np.where(faces.to_numpy()[:, None], df[["x", "y", "w", "h"]].to_numpy(), np.nan)
    unshot = df.assign(track=assign_ids(df.time_s.to_numpy(), boxes))
    crossing = int((df[faces].groupby("face_id").shot.nunique() > 1).sum())
    crossing_unshot = int((unshot[unshot.track >= 0].groupby("track").shot.nunique() > 1).sum())
    return len(expected), len(found), len(found & expected), crossing, crossing_unshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="built clips with hard cuts (seeds 0..N-1)")
    parser.add_argument("--fade-clips", type=int, default=5, help="built clips with fades at every other cut")
    parser.add_argument("--shots", type=int, default=10, help="shots per built clip")
    parser.add_argument("--smoke", action="store_true", help="one clip of each kind, 3 shots: for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.clips, args.fade_clips, args.shots = 1, 1, 3
    with tempfile.TemporaryDirectory() as tmp:
        kinds: dict[str, dict[Path, list[int]]] = {"hard cuts": {REAL[0]: REAL[1]}, "with fades": {}}
        for seed in range(args.clips + args.fade_clips):
            fades = seed >= args.clips
            path = Path(tmp) / f"edited_{seed}.mp4"
            kinds["with fades" if fades else "hard cuts"][path] = cuts.build(path, args.shots, seed, fades=fades)
        clips = {path: truth for kind in kinds.values() for path, truth in kind.items()}
        print(f"{args.clips} built clips of {args.shots} shots and face_noface.mov, {args.fade_clips} with a fade "
              f"through black at every other cut: {sum(map(len, clips.values()))} cuts")  # fmt: skip
        print(f"{'sampling':<12}{'clips':<12}{'cuts':>6}{'found':>7}{'recall':>9}{'precision':>11}{'ids across':>12}"
              f"{'without shots':>15}{'frames/s':>10}")  # fmt: skip
        for fps in (None, 5.0):
            t0 = time.perf_counter()
            config = LabelConfig(
                inputs=tuple(map(str, clips)), out=str(Path(tmp) / f"out_{fps}"), fps=fps, segment_seconds=1.0
            )
            entries = {Path(e.path).name: e for e in run(config, progress=None).entries}
            rate = sum(e.frames for e in entries.values()) / (time.perf_counter() - t0)
            for kind, group in kinds.items():
                totals = np.zeros(5, int)
                for path, truth in group.items():
                    totals += score(pd.read_parquet(entries[path.name].output), truth)
                true, found, right, across, baseline = totals
                sampling = "every frame" if fps is None else f"--fps {fps:g}"
                print(f"{sampling:<12}{kind:<12}{true:>6}{found:>7}{right / max(true, 1):>9.1%}"
                      f"{right / max(found, 1):>11.1%}{across:>12}{baseline:>15}{rate:>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
