"""The classifier's runtimes side by side: faces/s, val accuracy and labelled timelines.

For a bundle (default: the shipped model), in one run: its multiply-adds a face and its
faces/s at `fer label`'s runtime on one and on every core beside the shipped model's (the
default it would replace); faces/s of each runtime of
:data:`fer.bundle.RUNTIMES` on one and on every core, against a baseline bundle on tf-keras
(default: the shipped model's float network, what `fer label` ran before LiteRT), and of each
TTA mode on the runtime `fer label` picks, on every core; accuracy,
macro-F1 and the fear and sad recall on FER-2013 val per runtime and TTA mode; how often the
runtimes agree there, and how often the labelled emotion of a face row on the sample clips agrees.

Usage: python benchmarks/classifier.py [--model BUNDLE] [--baseline BUNDLE] [--data ../shared/data/fer2013]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import bundle
from fer.labels import EMOTIONS
from fer.metrics import score

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def read_val(data: Path, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FER-2013 val as ``(faces, labels)`` straight from its image folders (the first
    ``per_class`` of each class; None: all)."""
    faces, labels = [], []
    for index, emotion in enumerate(EMOTIONS):
        for path in sorted((data / "val" / emotion).iterdir())[:per_class]:
            faces.append(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
            labels.append(index)
    return np.stack(faces), np.asarray(labels)


def _faces_per_s(model_path: str | None, runtime: str, threads: int, faces: np.ndarray, tta: str) -> float:
    model = bundle.load(model_path, runtime=runtime, threads=threads)
    model.predict(faces[:64], tta=tta)  # warm-up: graph tracing, tensor allocation
    t = time.perf_counter()
    model.predict(faces, tta=tta)
    return len(faces) / (time.perf_counter() - t)


def faces_per_s(model_path: str | None, runtime: str, threads: int, faces: np.ndarray, tta: str = "none") -> float:
    """Faces/s of one runtime with ``threads`` CPU threads and ``tta``, in a fresh process
    (TensorFlow fixes its thread count once per process)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_faces_per_s, (model_path, runtime, threads, faces, tta))


def bundle_multiply_adds(model_path: str | None) -> int:
    """Multiply-adds a face of a bundle: of its network, or of all its ensemble's members."""
    from fer.train.models import multiply_adds

    model = bundle.load(model_path, runtime="keras")
    return (
        sum(multiply_adds(m.keras_model) for m, _ in model.members)
        if model.members
        else multiply_adds(model.keras_model)
    )


def sample_rows(model_path: str | None, runtime: str, out: Path, clips: tuple[str, ...] = ()) -> np.ndarray:
    """The emotion of every face row `fer label` writes for ``clips`` (default: the sample clips),
    in a fixed order."""
    import pandas as pd

    from fer.video.pipeline import LabelConfig, run

    clips = clips or tuple(str(p) for p in sorted(SAMPLES.glob("*")) if p.suffix in (".mp4", ".mov"))
    run(LabelConfig(inputs=clips, out=str(out), model=model_path, runtime=runtime, engine="process"), progress=None)
    frames = [pd.read_parquet(p) for p in sorted((out / "timelines").glob("*.parquet"))]
    rows = pd.concat(frames).query("face_id >= 0").sort_values(["video_id", "frame", "face_id"])
    return rows["emotion"].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="the bundle measured (default: the shipped model)")
    parser.add_argument(
        "--baseline", default=None,
        help="the classifier to beat, on tf-keras (default: the shipped model; the issue's 'today')",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fer-bench-classifier"))
    parser.add_argument("--smoke", action="store_true", help="5 faces a class, one clip: seconds, for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    faces, labels = read_val(args.data, 5 if args.smoke else None)
    clips = (str(SAMPLES / "single_face.mp4"),) if args.smoke else ()
    if args.smoke:  # outputs of its own, labelled anew (the full run's are kept between runs)
        args.workdir = Path(tempfile.mkdtemp(prefix="fer-bench-classifier-smoke-"))
    cores = os.cpu_count() or 1
    for name, path in (("measured", args.model), ("shipped default", None)):
        rates = ", ".join(f"{t} thread(s) {faces_per_s(path, 'auto', t, faces):.0f}" for t in sorted({1, cores}))
        print(f"{name} {path or bundle.resolve(None)}: {bundle_multiply_adds(path) / 1e6:.1f} M multiply-adds a face; "
              f"faces/s at fer label's runtime: {rates}")  # fmt: skip
    speed, probs = {}, {}
    for runtime in bundle.RUNTIMES:
        for threads in sorted({1, cores}):
            speed[runtime, threads] = faces_per_s(args.model, runtime, threads, faces)
        model = bundle.load(args.model, runtime=runtime)
        for tta in bundle.TTA_MODES:
            probs[runtime, tta] = model.predict(faces, tta=tta)
    default = bundle.load(args.model).runtime  # what `fer label` runs ("auto"; an ensemble's members' runtimes)
    tta_speed = {t: faces_per_s(args.model, "auto", cores, faces, t) for t in bundle.TTA_MODES if t != "none"}
    base = "keras"
    baseline = {t: faces_per_s(args.baseline, base, t, faces) for t in sorted({1, cores})}
    for threads, rate in baseline.items():
        print(f"baseline {args.baseline or 'shipped model'} on {base}, {threads} thread(s): {rate:6.0f} faces/s")
    for (runtime, threads), rate in speed.items():
        ratio = rate / baseline[threads]
        print(f"{runtime:7s} {threads} thread(s): {rate:6.0f} faces/s ({ratio:.2f}x the baseline)")
    for tta, rate in tta_speed.items():
        ratio = rate / baseline[cores]
        print(f"{default:7s} {cores} thread(s), tta={tta}: {rate:6.0f} faces/s ({ratio:.2f}x the baseline)")
    for (runtime, tta), p in probs.items():
        s = score(labels, p)
        fear, sad = s.recall[EMOTIONS.index("fear")], s.recall[EMOTIONS.index("sad")]
        print(f"val {runtime:7s} tta={tta:8s}: accuracy {s.accuracy:.4f}, macro-F1 {s.macro_f1:.4f}, "
              f"fear recall {fear:.3f}, sad recall {sad:.3f}")  # fmt: skip
    for runtime in bundle.RUNTIMES:
        if runtime != base:
            same = np.mean(probs[runtime, "none"].argmax(1) == probs[base, "none"].argmax(1))
            diff = np.abs(probs[runtime, "none"] - probs[base, "none"])
            print(f"val {runtime} vs {base}: same class for {same:.2%} of the faces, "
                  f"probabilities within {diff.max():.3f} (mean {diff.mean():.4f})")  # fmt: skip
    rows = {r: sample_rows(args.model, r, args.workdir / r, clips) for r in bundle.RUNTIMES}
    for runtime in bundle.RUNTIMES:
        if runtime != base:
            same = np.mean(rows[runtime] == rows[base])
            print(f"sample clips {runtime} vs {base}: the same emotion on {same:.2%} of {len(rows[base])} face rows")
    if args.smoke:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
