"""Time to the first result: `fer label` end to end on a 4-second clip and on a broken file,
in this process (the default for short jobs) against on a local Ray (the baseline), same run.

Each run is the command line a user types, timed from launch to exit (the timeline or the
failure is on disk by then), best of ``--repeat``.

Usage: python benchmarks/first_result.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
#: 120 frames at 29.97 fps: a 4.0-second clip.
CLIP = ROOT / "data" / "samples" / "carphone_pristine.mp4"


def timed_label(path: Path, engine: str, workdir: Path) -> tuple[float, int]:
    """Seconds from launching `fer label` to its exit, and its exit status."""
    out = Path(tempfile.mkdtemp(dir=workdir))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "fer.cli", "label", str(path), "--out", str(out), "--engine", engine],
        capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - t, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one try each: for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.repeat = 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broken = workdir / "broken.mp4"
        broken.write_bytes(b"")
        for name, path, status in (("4-s clip (120 frames)", CLIP, 0), ("broken file (0 bytes)", broken, 1)):
            times = {}
            for engine in ("process", "ray"):
                runs = [timed_label(path, engine, workdir) for _ in range(args.repeat)]
                assert all(code == status for _, code in runs), (name, engine, runs)
                times[engine] = min(t for t, _ in runs)
            print(
                f"{name}: in this process {times['process']:.1f} s | on a local Ray {times['ray']:.1f} s "
                f"| {times['ray'] / times['process']:.1f}x faster (best of {args.repeat})"
            )


if __name__ == "__main__":
    main()
