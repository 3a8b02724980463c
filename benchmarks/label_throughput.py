"""Labelling throughput and memory: `fer label` against OpenCV's decode-only floor.

Builds longer inputs from the sample clips (looped with ffmpeg stream copy when ffmpeg is
installed, so codecs stay H.264/HEVC; re-encoded with OpenCV otherwise), then in one run:

1. decode-only frames/s over the same files with the same number of processes;
2. `fer label` frames/s end to end (and after start-up), with the peak memory of all
   processes, at 1x and 4x input length;
3. time per stage (decode, detect, crop, classify) in one process on one clip;
4. time to the first result of a 4-s clip and of a broken file (``first_result.py``, best of 2).

Usage: python benchmarks/label_throughput.py [--loops 1] [--workdir /tmp/fer-bench]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
from first_result import CLIP, timed_label

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from tests.mp4 import looped  # noqa: E402 - the repository's own helper, found from its root

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
# (clip, times looped at 1x): about 5,300 frames over three files and two codecs.
INPUTS = [("single_face.mp4", 25), ("carphone_pristine.mp4", 15), ("face_noface.mov", 10)]


def build_inputs(workdir: Path, scale: int, smoke: bool = False) -> list[Path]:
    """The sample clips, each looped its :data:`INPUTS` times ``scale`` (once ``scale`` with ``smoke``)."""
    out_dir = workdir / f"x{scale}"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    ffmpeg = shutil.which("ffmpeg")
    for clip, loops in INPUTS:
        # ffmpeg copies the streams (codecs kept); without it, OpenCV re-encodes to MPEG-4 in MP4.
        src, dst = SAMPLES / clip, out_dir / f"long_{Path(clip).stem}{Path(clip).suffix if ffmpeg else '.mp4'}"
        if not dst.exists():
            n = (1 if smoke else loops) * scale
            if ffmpeg:
                cmd = ["ffmpeg", "-v", "error", "-stream_loop", str(n - 1), "-i", str(src), "-c", "copy", str(dst)]
                subprocess.run(cmd, check=True)
            else:
                looped(src, dst, n)
        paths.append(dst)
    return paths


def _decode(path: str) -> int:
    cap = cv2.VideoCapture(path)
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            return n
        n += 1


def decode_floor(paths: list[Path], processes: int) -> tuple[int, float]:
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(processes) as pool:
        frames = sum(pool.map(_decode, [str(p) for p in paths]))
    return frames, time.perf_counter() - t


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    table = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            table[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return table


def _memory(pid: int) -> tuple[int, int]:
    """Resident and proportional bytes of one process (0, 0 once it is gone).

    Resident memory counts a shared page (Python, Ray's libraries, the object store) once in
    every process that maps it; the proportional set size divides it among them, so its sum
    over processes is the memory the run really takes.
    """
    with contextlib.suppress(OSError, ValueError):
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        return int(fields["Rss"].split()[0]) * 1024, int(fields["Pss"].split()[0]) * 1024
    return 0, 0


def tree_memory(root: int) -> tuple[int, int]:
    """Resident and proportional bytes of ``root`` and all its descendants (a local Ray's
    processes are children of the driver that started it)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    rss = pss = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        r, p = _memory(pid)
        rss, pss = rss + r, pss + p
        stack += children.get(pid, [])
    return rss, pss


class PeakMemory:
    """Samples the memory of this process tree while it runs: peak sums of resident and of
    proportional memory."""

    # Reading a process's memory map costs ~5 ms: sampling more often slows the run measured.
    def __init__(self, interval: float = 1.0):
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory(os.getpid())
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            time.sleep(interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_label(paths: list[Path], out: Path, decoders: int) -> dict:
    from fer.video.pipeline import LabelConfig, run

    shutil.rmtree(out, ignore_errors=True)
    config = LabelConfig(inputs=tuple(str(p) for p in paths), out=str(out), decoders=decoders, engine="ray")
    with PeakMemory() as mem:
        t = time.perf_counter()
        summary = run(config, progress=None)
        wall = time.perf_counter() - t
    return {"frames": summary.frames, "faces": summary.faces, "wall": wall, "rss_mb": mem.rss / 2**20,
            "pss_mb": mem.pss / 2**20}  # fmt: skip


def stage_times(clip: Path, frames: int = 300) -> dict[str, float]:
    """Milliseconds per frame (classify: per face) of each stage, in this process."""
    from fer import bundle
    from fer.video.align import crop_face
    from fer.video.faces import DEFAULT_DETECTOR, create_detector

    cap = cv2.VideoCapture(str(clip))
    t = time.perf_counter()
    images = []
    while len(images) < frames:
        ok, f = cap.read()
        if not ok:
            break
        images.append(f)
    decode = time.perf_counter() - t
    detector = create_detector(DEFAULT_DETECTOR)
    t = time.perf_counter()
    dets = [detector(f) for f in images]
    detect = time.perf_counter() - t
    t = time.perf_counter()
    crops = [crop_face(f, d) for f, ds in zip(images, dets, strict=True) for d in ds]
    crop = time.perf_counter() - t
    model = bundle.load()
    model.predict(crops[:8])
    t = time.perf_counter()
    model.predict(crops)
    classify = time.perf_counter() - t
    n = len(images)
    return {
        "decode": 1000 * decode / n,
        "detect": 1000 * detect / n,
        "crop": 1000 * crop / max(1, len(crops)),
        "classify": 1000 * classify / max(1, len(crops)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fer-bench"))
    parser.add_argument("--decoders", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--smoke", action="store_true", help="each clip once and 4 times: for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:  # inputs of their own: the full run's are kept between runs
        args.workdir = args.workdir / "smoke"

    results = {}
    for scale in (1, 4):
        paths = build_inputs(args.workdir, scale, args.smoke)
        frames, seconds = decode_floor(paths, args.decoders)
        label = run_label(paths, args.workdir / f"out{scale}", args.decoders)
        results[scale] = (frames, seconds, label)
        print(
            f"x{scale}: {frames} frames in {len(paths)} files | decode-only ({args.decoders} proc): "
            f"{frames / seconds:.0f} frames/s | fer label: {label['frames'] / label['wall']:.0f} frames/s end to end "
            f"({label['wall']:.1f} s, {label['faces']} faces), ratio to decode floor "
            f"{(label['frames'] / label['wall']) / (frames / seconds):.2f} | peak memory of all processes: "
            f"resident {label['rss_mb']:.0f} MB, proportional {label['pss_mb']:.0f} MB",
            flush=True,
        )
    l1, l4 = results[1][2], results[4][2]
    # Start-up (actors, model loads) is the same at both lengths: the difference is steady state.
    steady = (l4["frames"] - l1["frames"]) / max(1e-9, l4["wall"] - l1["wall"])
    print(f"steady-state fer label: {steady:.0f} frames/s (4x minus 1x)")
    ratios = {kind: l4[f"{kind}_mb"] / l1[f"{kind}_mb"] for kind in ("rss", "pss")}
    print(f"peak memory 4x / 1x: resident {ratios['rss']:.2f}, proportional {ratios['pss']:.2f}")
    ms = stage_times(SAMPLES / "single_face.mp4")
    print(
        "per stage, one process: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
        + " (decode/detect per frame, crop/classify per face)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "broken.mp4"
        broken.write_bytes(b"")
        tries = 1 if args.smoke else 2
        clip = min(timed_label(CLIP, "auto", Path(tmp))[0] for _ in range(tries))
        fail = min(timed_label(broken, "auto", Path(tmp))[0] for _ in range(tries))
    print(f"first result, `fer label` launch to exit: 4-s clip {clip:.1f} s, broken file {fail:.1f} s")


if __name__ == "__main__":
    main()
