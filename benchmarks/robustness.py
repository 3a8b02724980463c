"""Robustness: FER+ accuracy of bundles on val faces clean and degraded as archive video degrades them.

Every model is scored in the same run, the shipped model first (the baseline), on the same
faces under each condition: clean; downscaled to 32, 24 and 20 px and back up to 48 (a face
that small in the frame); blurred; JPEG-compressed; histogram-equalised (FER-2013's JPEGs are).
Each cell: accuracy against FER+'s majority / on the agreed faces (FER-2013 label = majority).

Usage: python benchmarks/robustness.py [--model BUNDLE ...] [--data ../shared/data/ferplus] [--tta none]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import bundle  # noqa: E402
from fer.data import ferplus  # noqa: E402
from fer.data.fer2013 import to_columns  # noqa: E402
from fer.evaluate import score_votes  # noqa: E402
from fer.labels import FACE_SIZE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _each(face_op: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda faces: np.stack([face_op(f) for f in faces])


def downscaled(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Faces seen at ``size`` px (area-averaged down, as a camera integrates) and scaled back up."""
    return _each(lambda f: cv2.resize(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA),
                                      (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR))  # fmt: skip


def _jpeg(face: np.ndarray, quality: int = 30) -> np.ndarray:
    _, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda faces: faces,
    "32 px": downscaled(32),
    "24 px": downscaled(24),
    "20 px": downscaled(20),
    "blur σ1.2": _each(lambda f: cv2.GaussianBlur(f, (0, 0), 1.2)),
    "JPEG q30": _each(_jpeg),
    "equalised": _each(cv2.equalizeHist),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="a bundle to measure (repeatable)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ferplus")
    parser.add_argument("--split", default="val")
    parser.add_argument("--tta", default="none", help="every model's TTA mode (default: fer label's)")
    parser.add_argument("--smoke", action="store_true", help="the first 100 faces: seconds, for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    from fer._ray import connect

    connect(None)
    columns = to_columns(ferplus.read_split(args.data, args.split, targets_mode="votes").dataset)
    columns = {k: v[: 100 if args.smoke else None] for k, v in columns.items()}
    models = {"shipped model": bundle.load(None)} | {m: bundle.load(m) for m in args.model}
    print(
        f"FER+ {args.split}: {len(columns['image'])} faces; cells: FER+ majority / agreed-face accuracy, tta={args.tta}"
    )
    print("| condition | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for name, degrade in CONDITIONS.items():
        faces = degrade(columns["image"])
        cells = []
        for model in models.values():
            s = score_votes(model.predict(faces, tta=args.tta), columns)
            cells.append(f"{s.majority.accuracy:.1%} / {s.agreed.accuracy:.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
