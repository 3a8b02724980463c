"""The soak: an archive of N clips with broken files, its driver killed mid-run and resumed.

Writes N distinct clips (byte-distinct copies of the sample clips, every 50th one broken:
one empty file, then garbage, cut short, or a cover-image podcast in turn), runs
``fer label ARCHIVE --out OUT --engine ray`` as a user would, SIGKILLs the driver once a share
of the clips is done, then runs the same command again to the end, and checks what is on disk:

- every clip has one manifest entry: ``done`` (its timeline holds every frame FFmpeg decodes,
  each once), or ``partial`` / ``failed`` for exactly the broken ones;
- no timeline without a ``done``/``partial`` entry (``fer check`` finds nothing);
- the second run labelled only what the first had not finished;
- the archive index (:mod:`fer.index`) holds every counted video's aggregates, row for row.

Prints the figures and exits 1 when anything is lost, doubled or wrong.

Usage: python benchmarks/soak.py [--clips 1000] [--kill-after 0.4] [--model BUNDLE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import index  # noqa: E402
from fer.storage import Location  # noqa: E402
from fer.video import manifest  # noqa: E402
from tests.formats import CASES, clip_frames, ffmpeg_frames  # noqa: E402
from tests.mp4 import distinct_copy, truncated  # noqa: E402

SAMPLES = ROOT / "data" / "samples"
CLIPS = ("single_face.mp4", "no_face.mp4", "carphone_pristine.mp4", "face_noface.mov")
BROKEN = ("empty", "garbage", "truncated", "podcast")


def build(folder: Path, n: int) -> dict[str, str]:
    """``n`` clips in ``folder``; what each should end as (``done`` or the broken kind)."""
    frames = {name: ffmpeg_frames(SAMPLES / name) for name in CLIPS}
    expected = {}
    podcast = next(c for c in CASES if not c.video)
    for i in range(n):
        if i % 50 == 49:
            # Empty files all have the same content (fer labels one, the others are its copies): one.
            kind = "empty" if i == 49 else BROKEN[1 + (i // 50) % (len(BROKEN) - 1)]
            path = folder / f"clip{i:05d}-{kind}.mp4"
            if kind == "empty":
                path.write_bytes(b"")
            elif kind == "garbage":
                path.write_bytes(os.urandom(50_000))
            elif kind == "truncated":  # a different cut each: distinct content
                path.write_bytes(truncated((SAMPLES / "carphone_pristine.mp4").read_bytes(), 0.4 + (i % 97) / 1000))
            else:
                podcast.write(*clip_frames(SAMPLES / "single_face.mp4"), path)
                path.write_bytes(path.read_bytes() + b"\0" * (i % 7))  # distinct content
            expected[path.name] = kind
        else:
            src = SAMPLES / CLIPS[i % len(CLIPS)]
            path = folder / f"clip{i:05d}{src.suffix}"
            distinct_copy(src, path, i)
            expected[path.name] = f"done:{frames[src.name]}"
    return expected


def label(archive: Path, out: Path, model: str | None) -> list[str]:
    command = [sys.executable, "-m", "fer.cli", "label", str(archive), "--out", str(out), "--engine", "ray"]
    return command + (["--model", model] if model else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--kill-after", type=float, default=0.4, help="kill the driver once this share is done")
    parser.add_argument("--model", default=None, help="a model bundle (default: the shipped model)")
    parser.add_argument("--smoke", action="store_true", help="12 clips: for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.clips = 12
    with tempfile.TemporaryDirectory() as tmp:
        archive, out = Path(tmp) / "archive", Path(tmp) / "out"
        archive.mkdir()
        expected = build(archive, args.clips)
        t0 = time.time()
        first = subprocess.Popen(label(archive, out, args.model), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while first.poll() is None and len(list((out / "manifest").glob("*.json"))) < args.kill_after * args.clips:
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_s, at_kill = time.time() - t0, len(list((out / "manifest").glob("*.json")))
        time.sleep(10)  # the killed driver's local Ray is ended by its watcher
        t1 = time.time()
        second = subprocess.run([*label(archive, out, args.model), "--json"], capture_output=True, text=True)
        resumed_s = time.time() - t1
        result = json.loads(second.stdout)
        check = subprocess.run([sys.executable, "-m", "fer.cli", "check", str(out)], capture_output=True, text=True)
        indexed, unindexed = index.check(Location.parse(str(out)))
        entries = {Path(e.path).name: e for e in manifest.load(out).values()}
        timelines = pd.read_parquet(out / "timelines") if any((out / "timelines").iterdir()) else None
    wrong, lost, doubled = [], 0, 0
    rows = timelines.groupby("video_id") if timelines is not None else None
    for name, want in expected.items():
        e = entries.get(name)
        if e is None:
            lost += 1
            continue
        if want.startswith("done:"):
            df = rows.get_group(e.video_id) if rows is not None and e.video_id in rows.groups else None
            frames = df.frame.nunique() if df is not None else 0
            doubled += int(df.duplicated(["frame", "x", "y"]).sum()) if df is not None else 0
            if (e.status, frames, e.frames) != ("done", int(want[5:]), int(want[5:])):
                wrong.append(f"{name}: {e.status} {frames} frames ({want})")
        elif e.status not in ("failed", "partial"):
            wrong.append(f"{name}: {e.status} ({want})")
    skipped = sum(v["status"] == "skipped" for v in result["videos"])
    print(f"{args.clips} clips ({sum(not w.startswith('done') for w in expected.values())} broken); driver SIGKILLed "
          f"after {killed_s:.0f} s with {at_kill} entries written; the same command then ran {resumed_s:.0f} s "
          f"(skipped {skipped} already labelled, exit {second.returncode})")  # fmt: skip
    print(f"entries {len(entries)} of {len(expected)}; lost {lost}; rows twice {doubled}; wrong {len(wrong)}; "
          f"fer check exit {check.returncode}; index: {indexed} videos as their files, "
          f"{len(unindexed)} not")  # fmt: skip
    for line in wrong[:20]:
        print("  " + line)
    return 1 if lost or doubled or wrong or check.returncode or unindexed else 0


if __name__ == "__main__":
    sys.exit(main())
