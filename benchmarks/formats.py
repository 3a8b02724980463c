"""The format matrix: the containers and codecs archives hold, each labelled by ``fer label``.

Builds every case of tests/formats.py from a sample clip with PyAV (DVD rips, broadcast
captures that start an hour in, AVI with B-frames, a podcast with a cover image, animated
GIF and WebP, and the formats that always came out right), labels the folder in one run at
``fer label``'s defaults (and with ``--segment-seconds``, so that files are sought into), and
prints per file: the frames FFmpeg itself decodes, the frames labelled, the frames labelled
more than once, the status and the reason. A file is right when it is ``done`` with every
frame FFmpeg decodes, each once (a file without a video stream: ``failed``, saying so).

Usage: python benchmarks/formats.py [--clip data/samples/single_face.mp4] [--repeat 1]
       [--segment-seconds 60] [--engine auto] [--model BUNDLE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer._ray import quiet_ray_data  # noqa: E402
from fer.video.pipeline import LabelConfig, run  # noqa: E402
from tests import formats  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clip", default=str(ROOT / "data/samples/single_face.mp4"), help="the clip every case is made of"
    )
    parser.add_argument("--repeat", type=int, default=1, help="the clip this many times over, in every file")
    parser.add_argument("--segment-seconds", type=float, default=60.0, help="fer label --segment-seconds")
    parser.add_argument("--engine", default="auto", help="fer label --engine")
    parser.add_argument("--model", default=None, help="a model bundle (default: the shipped model)")
    parser.add_argument("--smoke", action="store_true", help="the defaults (the clip once: already seconds)")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    quiet_ray_data()
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "in", Path(tmp) / "out"
        decoded = formats.build(folder, Path(args.clip), args.repeat)
        config = LabelConfig(inputs=(str(folder),), out=str(out), model=args.model,
                             segment_seconds=args.segment_seconds, engine=args.engine)  # fmt: skip
        summary = run(config, progress=None)
        df = pd.read_parquet(out / "timelines") if any((out / "timelines").iterdir()) else pd.DataFrame()
    entries = {Path(e.path).name: e for e in summary.entries}
    print(f"clip {Path(args.clip).name} x{args.repeat}, --segment-seconds {args.segment_seconds:g}, "
          f"--engine {args.engine}; {summary.probes} probes for {len(entries)} files")  # fmt: skip
    print("| file | what it is | FFmpeg decodes | fer labels | twice | status | reason | right |")
    print("|---|---|---|---|---|---|---|---|")
    wrong = 0
    for case in formats.CASES:
        e = entries.get(case.name)
        rows = df[df.video_id == e.video_id] if e is not None and len(df) else pd.DataFrame({"frame": []})
        twice = int(rows.duplicated(["frame", "x", "y", "w", "h"]).sum()) if len(rows) else 0
        labelled = int(rows.frame.nunique())
        ok = (
            e is not None
            and twice == 0
            and ((e.status, labelled) == ("done", decoded[case.name]) if case.video else e.status == "failed")
        )
        wrong += not ok
        status, reason = (e.status, e.reason) if e is not None else ("not found", "")
        print(f"| `{case.name}` | {case.what} | {decoded[case.name]} | {labelled} | {twice} | {status} | {reason} | "
              f"{'yes' if ok else '**no**'} |")  # fmt: skip
    print(f"{len(formats.CASES) - wrong} of {len(formats.CASES)} files right")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
