"""fer against the tool people reach for first: the PyPI ``fer`` package (justinshenk/fer).

Each figure measured in this run, side by side:

1. accuracy on FER+ val faces (FER+ majority / agreed faces, as ``benchmarks/robustness.py``), clean and
   seen at 24 px: the shipped model against the package's emotion network, each given the 48x48 crops
   the way it was trained (the package: resized to its 64x64 input and scaled to [-1, 1], its own steps);
2. faces found on 1080p frames tiled from the sample clips (``tests/tiles.py``, faces of 20-320 px):
   YuNet at ``fer label``'s defaults against the package's face finder (OpenCV's Haar cascade at its
   defaults), for the faces under 50 px (the package's smallest) and for those of 50 px and more;
3. frames/s on a 1080p video with 4 faces a frame: ``fer label`` after start-up (the difference between
   a 1,600- and a 400-frame video, as ``benchmarks/face_recall.py``) against the package's
   ``detect_emotions`` on every frame of the 400-frame video, in one process after its first frame.

The package is also called ``fer``, so it runs in a subprocess on a path of its own, installed there
once with pip (``--env``): its wheel and OpenCV 4's contrib build, which still has the Haar cascade.
py-feat and deepface are not measured: both download their model weights when they run.

Usage: python benchmarks/other_tools.py [--version 25.10.3] [--env DIR] [--data ../shared/data/ferplus]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.face_recall import FACE_SIZES, label_speed, reference_frames  # noqa: E402
from benchmarks.machine import this_machine  # noqa: E402
from benchmarks.robustness import downscaled  # noqa: E402
from fer import bundle  # noqa: E402
from fer.data import ferplus  # noqa: E402
from fer.data.fer2013 import to_columns  # noqa: E402
from fer.evaluate import score_votes  # noqa: E402
from fer.video.faces import create_detector  # noqa: E402
from fer.video.pipeline import LabelConfig  # noqa: E402
from tests.tiles import grid_for, matched, tile, write_video  # noqa: E402

#: The package's smallest face (its ``min_face_size`` default).
PACKAGE_MIN_FACE = 50

#: Runs in the package's own environment: ``classify FACES.npy OUT.npy``, ``find FRAMES.npy OUT.json``
#: or ``video CLIP OUT.json``. Its steps are its own: ``_classify_emotions`` after the resize and
#: scaling ``detect_emotions`` applies, ``find_faces``, ``detect_emotions``.
WORKER = """
import json, sys, time
import cv2, numpy as np
from fer.fer import FER

mode, src, out = sys.argv[1:4]
tool = FER()
if mode == "classify":
    faces = np.load(src)
    x = np.stack([cv2.resize(f, (64, 64)) for f in faces]).astype("float32") / 255.0
    np.save(out, np.asarray(tool._classify_emotions((x - 0.5) * 2.0)))
elif mode == "find":
    boxes = [np.asarray(tool.find_faces(f), float).reshape(-1, 4).tolist() for f in np.load(src)]
    json.dump(boxes, open(out, "w"))
else:
    cap, n, t0 = cv2.VideoCapture(src), 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        tool.detect_emotions(frame)
        n += 1
        if n == 1:
            t0 = time.perf_counter()
    json.dump({"frames": n - 1, "seconds": time.perf_counter() - t0}, open(out, "w"))
"""


def install(env: Path, version: str) -> Path:
    """The package and OpenCV 4's contrib build in ``env`` (installed there once)."""
    if not (env / "fer" / "fer.py").is_file():
        print(f"installing fer=={version} into {env} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(env), "--no-deps", f"fer=={version}",
             "opencv-contrib-python-headless>=4.10,<5"],
            check=True,
        )  # fmt: skip
    return env


def package(env: Path, mode: str, src: Path, out: Path) -> None:
    """Run the worker in the package's environment (its path first, outside this repository)."""
    environ = {**os.environ, "PYTHONPATH": str(env)}
    proc = subprocess.run([sys.executable, "-c", WORKER, mode, str(src), str(out)], cwd=out.parent, env=environ,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"the fer package failed ({mode}):\n{proc.stderr[-3000:]}")


def accuracy(env: Path, data: Path, work: Path, limit: int | None = None) -> dict[str, dict[str, str]]:
    """Per condition, per tool: FER+ majority / agreed-face accuracy (on the first ``limit`` faces; None: all)."""
    columns = to_columns(ferplus.read_split(data, "val", targets_mode="votes").dataset)
    columns = {k: v[:limit] for k, v in columns.items()}
    shipped = bundle.load(None)
    out = {}
    for name, view in (("clean", lambda f: f), ("24 px", downscaled(24))):
        faces = view(columns["image"])
        np.save(work / "faces.npy", faces)
        package(env, "classify", work / "faces.npy", work / "probs.npy")
        cells = {}
        for tool, probs in (("fer", shipped.predict(faces)), ("package", np.load(work / "probs.npy"))):
            s = score_votes(probs, columns)
            cells[tool] = f"{s.majority.accuracy:.1%} / {s.agreed.accuracy:.1%}"
        out[name] = cells
    return out


def faces_found(env: Path, refs, work: Path) -> dict[str, tuple[float, float]]:
    """Per tool: (share found of the tiled faces under 50 px, of those of 50 px and more)."""
    canvases, truths = zip(*(tile(f, b, grid_for(px, max(b[2], b[3]), f.shape[1])) for f, b in refs
                             for px in FACE_SIZES), strict=True)  # fmt: skip
    np.save(work / "frames.npy", np.stack(canvases))
    package(env, "find", work / "frames.npy", work / "boxes.json")
    theirs = [np.asarray(b, np.float32).reshape(-1, 4) for b in json.loads((work / "boxes.json").read_text())]
    min_face = LabelConfig(inputs=(), out="").min_face
    yunet = create_detector("yunet", min_face=min_face)
    ours = [np.array([[d.x, d.y, d.w, d.h] for d in yunet(c) if d.size >= min_face], np.float32).reshape(-1, 4)
            for c in canvases]  # fmt: skip
    sizes = np.concatenate([np.maximum(t[:, 2], t[:, 3]) for t in truths])
    out = {}
    for tool, found in (("fer", ours), ("package", theirs)):
        hit = np.concatenate([matched(t, f) for t, f in zip(truths, found, strict=True)])
        big = sizes >= PACKAGE_MIN_FACE
        out[tool] = (hit[~big].mean(), hit[big].mean())
    return out


def speed(env: Path, refs, work: Path, length: int = 100) -> dict[str, float]:
    """Per tool: frames/s on 1080p video with 4 faces a frame (videos of 4 and 16 x ``length`` frames)."""
    t1, t4, f1, f4 = label_speed(work, refs, 2, length)
    clip = [tile(f, b, 2)[0] for f, b in refs]
    video = write_video(work / "wide2.mp4", [clip[i % len(clip)] for i in range(f1)])
    package(env, "video", video, work / "video.json")
    theirs = json.loads((work / "video.json").read_text())
    return {"fer": (f4 - f1) / (t4 - t1), "package": theirs["frames"] / theirs["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="25.10.3", help="the PyPI fer package's version")
    parser.add_argument("--env", type=Path, default=Path.home() / ".cache" / "fer" / "other-tools")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ferplus")
    parser.add_argument("--frames", type=int, default=3, help="source frames per clip (each tiled at every size)")
    parser.add_argument("--smoke", action="store_true", help="100 faces, 8- and 32-frame videos: for the tests")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    limit, length = (100, 2) if args.smoke else (None, 100)
    if args.smoke:
        args.frames = 1
    env = install(args.env, args.version)
    from fer._ray import connect

    connect(None)
    refs = reference_frames(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        acc = accuracy(env, args.data, work, limit)
        found = faces_found(env, refs, work)
        fps = speed(env, refs, work, length)
    shipped = bundle.read_meta(bundle.resolve(None))["id"]
    print(f"fer (shipped model {shipped}, defaults) against the PyPI fer package {args.version}, "
          f"2 tools measured in one run ({time.perf_counter() - t0:.0f} s):\n")  # fmt: skip
    print(f"| figure | fer | fer package {args.version} |\n|---|---|---|")
    for name, cells in acc.items():
        print(f"| FER+ val accuracy, majority / agreed faces, {name} | {cells['fer']} | {cells['package']} |")
    for k, sizes in enumerate((f"20-{PACKAGE_MIN_FACE - 1} px", f"{PACKAGE_MIN_FACE}-320 px")):
        print(f"| faces found, 1080p tiled frames, {sizes} | {found['fer'][k]:.1%} | {found['package'][k]:.1%} |")
    print(f"| frames/s, 1080p with 4 faces a frame | {fps['fer']:.1f} | {fps['package']:.1f} |")
    print(f"\n({cv2.__name__} {cv2.__version__} here; the package runs on OpenCV 4 contrib in {env})")


if __name__ == "__main__":
    main()
