"""Shot detection through ``fer label``: cut recall and precision, and face ids across cuts.

Builds clips of shots of the sample clips joined by hard cuts at known frames (tests/cuts.py:
0.8-2.5 s shots, a face on both sides of some cuts, on one or neither side of others), adds
face_noface.mov (its own cut at frame 73), labels them with the default settings at every
frame and at ``--fps 5`` (1-s segments, so segment boundaries fall inside shots and on cuts),
and prints, beside the tracker without shots on the same rows (the baseline):

1. cuts found at the first sampled frame of each new shot: recall and precision;
2. face ids that span two shots.

Usage: python benchmarks/shots.py [--clips 10] [--shots 10]
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

from fer.video.pipeline import LabelConfig, run  # noqa: E402
from fer.video.track import assign_ids  # noqa: E402
from tests import cuts  # noqa: E402

#: face_noface.mov's own cut, from a woman talking to the empty room (frame 72 blends the two).
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
    parser.add_argument("--clips", type=int, default=10, help="built clips (seeds 0..N-1)")
    parser.add_argument("--shots", type=int, default=10, help="shots per built clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = {REAL[0]: REAL[1]}
        for seed in range(args.clips):
            path = Path(tmp) / f"edited_{seed}.mp4"
            clips[path] = cuts.build(path, shots=args.shots, seed=seed)
        n_cuts = sum(map(len, clips.values()))
        print(f"{args.clips} built clips of {args.shots} shots and face_noface.mov: {n_cuts} cuts")
        print(f"{'sampling':<12}{'cuts':>6}{'found':>7}{'recall':>9}{'precision':>11}{'ids across':>12}"
              f"{'without shots':>15}{'frames/s':>10}")  # fmt: skip
        for fps in (None, 5.0):
            t0 = time.perf_counter()
            config = LabelConfig(
                inputs=tuple(map(str, clips)), out=str(Path(tmp) / f"out_{fps}"), fps=fps, segment_seconds=1.0
            )
            entries = {Path(e.path).name: e for e in run(config, progress=None).entries}
            seconds = time.perf_counter() - t0
            totals = np.zeros(5, int)
            for path, truth in clips.items():
                totals += score(pd.read_parquet(entries[path.name].output), truth)
            true, found, right, across, baseline = totals
            frames = sum(e.frames for e in entries.values())
            print(f"{'every frame' if fps is None else f'--fps {fps:g}':<12}{true:>6}{found:>7}{right / true:>9.1%}"
                  f"{right / max(found, 1):>11.1%}{across:>12}{baseline:>15}{frames / seconds:>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
