"""Photos at photo speed: `fer label` on a folder of portrait photos, start-up included, on the
image path (this process, a decoder per core, classified and recorded in batches: the default)
against every photo as a video on a local Ray (the path before it), in one run; then `fer people` on
the default run's output, which describes the photos' faces (left to it: see fer.video.persons).

The photos are frames of the shipped sample clips (faces of 60-200 px) cut to portrait and
landscape sizes from 260x360 to 640x480 and written as JPEG; each run is the command line a user
types, timed from launch to exit.

Usage: python benchmarks/photos.py [--photos 400] [--smoke]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402

SAMPLES = ROOT / "data" / "samples"
SIZES = ((260, 360), (360, 480), (480, 640), (640, 480))


def write_photos(folder: Path, n: int) -> None:
    """``n`` JPEG photos of the sample clips' faces, sizes cycling through :data:`SIZES`
    (mirrored once the clips' frames run out, so no two photos are the same)."""
    frames = []
    for clip in ("carphone_pristine.mp4", "single_face.mp4", "face_noface.mov"):
        cap = cv2.VideoCapture(str(SAMPLES / clip))
        while len(frames) < n and (grabbed := cap.read())[0]:
            frames.append(grabbed[1])
        cap.release()
    folder.mkdir(parents=True)
    for i in range(n):
        frame = frames[i % len(frames)] if i < len(frames) else cv2.flip(frames[i % len(frames)], 1)
        w, h = SIZES[i % len(SIZES)]
        fh, fw = frame.shape[:2]
        side = min(fw, int(fh * w / h))  # the widest centred crop of the photo's aspect
        x0, crop_h = (fw - side) // 2, min(fh, int(side * h / w))
        crop = frame[(fh - crop_h) // 2 : (fh - crop_h) // 2 + crop_h, x0 : x0 + side]
        cv2.imwrite(str(folder / f"photo{i:05d}.jpg"), cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))


#: What is timed: `fer label`'s options, and what they mean.
RUNS = {
    "image path (default)": [],
    "image path, --no-persons (no face descriptors)": ["--no-persons"],
    "each photo a video on Ray (before)": ["--engine", "ray"],
}


def timed_label(folder: Path, out: Path, options: list[str]) -> tuple[float, str]:
    """Seconds from launching `fer label` to its exit, and its summary's last line."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fer.cli", "label", str(folder), "--out", str(out), *options],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"fer label {' '.join(options)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="8 photos, the image path only: seconds, for the tests")
    args = parser.parse_args()
    n = 8 if args.smoke else args.photos
    runs = dict(list(RUNS.items())[:1]) if args.smoke else RUNS
    print(f"{n} photos (260x360 to 640x480), `fer label` end to end, start-up included; {this_machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        write_photos(folder, n)
        for k, (what, options) in enumerate(runs.items()):
            seconds, totals = timed_label(folder, Path(tmp) / f"out-{k}", options)
            print(f"  {what}: {n / seconds:.1f} photos/s ({seconds:.1f} s)")
            if not totals.startswith(f"{n} videos: {n} done"):
                sys.exit(f"not every photo was labelled: {totals}")
        t = time.perf_counter()
        people = subprocess.run([sys.executable, "-m", "fer.cli", "people", str(Path(tmp) / "out-0")],
                                capture_output=True, text=True)  # fmt: skip
        if people.returncode != 0:
            sys.exit(f"fer people failed ({people.returncode}): {people.stderr[-2000:]}")
        print(f"  then fer people (describes the photos' faces): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
