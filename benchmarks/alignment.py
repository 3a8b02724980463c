"""Does aligning crops on the eyes help? FER-2013 faces, tilted and placed in larger frames.

Each validation face is upscaled 4x, placed in the middle of a frame twice its size and
the frame rotated by a random angle in +-20 degrees (seeded). ``fer evaluate --detect``'s
path (detect the largest face, crop, classify) then runs with eye alignment and with plain
box crops, beside the accuracy on the original 48x48 crops as the ceiling. Printed:
faces found, accuracy on found faces, end-to-end accuracy (a miss counts as wrong).

Usage: python benchmarks/alignment.py [--data ../shared/data/fer2013] [--split val] [--limit-per-class N]
       [--max-angle 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import bundle  # noqa: E402
from fer.crop import CropConfig  # noqa: E402
from fer.data import fer2013  # noqa: E402
from fer.evaluate import evaluate_detected  # noqa: E402
from fer.labels import EMOTIONS  # noqa: E402
from fer.metrics import score  # noqa: E402
from fer.video.pipeline import LabelConfig  # noqa: E402

UPSCALE = 4


def tilted_dataset(
    data: Path, split: str, out: Path, limit: int | None, max_angle: float, seed: int = 0
) -> tuple[np.ndarray, list]:
    """Write ``out/<split>/<class>/*.png`` tilted copies; return the originals and labels."""
    paths, labels = fer2013.list_folder_split(data, split)
    if limit:
        paths, labels = fer2013.take_per_class(paths, labels, limit)
    rng = np.random.default_rng(seed)
    originals = []
    for i, (path, label) in enumerate(zip(paths, labels, strict=True)):
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        originals.append(face)
        big = cv2.resize(face, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
        side = big.shape[0]
        frame = np.full((2 * side, 2 * side), int(face.mean()), np.uint8)
        frame[side // 2 : side // 2 + side, side // 2 : side // 2 + side] = big
        m = cv2.getRotationMatrix2D((side - 0.5, side - 0.5), rng.uniform(-max_angle, max_angle), 1.0)
        frame = cv2.warpAffine(frame, m, frame.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        folder = out / split / EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame)
    return np.stack(originals), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fer2013"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--max-angle", type=float, default=20.0, help="largest tilt, degrees")
    parser.add_argument("--smoke", action="store_true", help="2 faces a class: seconds, for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.limit_per_class = 2
    defaults = LabelConfig(inputs=(), out="")
    model = bundle.load(args.model)
    with tempfile.TemporaryDirectory() as d:
        originals, labels = tilted_dataset(Path(args.data), args.split, Path(d), args.limit_per_class, args.max_angle)
        ceiling = score(np.asarray(labels), model.predict(originals))
        print(
            f"{len(labels)} {args.split} faces tilted up to +-{args.max_angle:.0f} deg; model {model.name} ({model.id})"
        )
        print(f"{'crop':<26}{'found':>8}{'accuracy (found)':>18}{'macro-F1':>10}{'end to end':>12}")
        print(f"{'original 48x48 (ceiling)':<26}{len(labels):>8}{ceiling.accuracy:>18.4f}{ceiling.macro_f1:>10.4f}")
        for align in (True, False):
            r = evaluate_detected(model, d, args.split, CropConfig(defaults.detector, defaults.min_face, align))
            name = "eye-aligned" if align else "box (not aligned)"
            found = r.images - r.missed
            print(f"{name:<26}{found:>8}{r.scores.accuracy:>18.4f}{r.scores.macro_f1:>10.4f}{r.end_to_end:>12.4f}")


if __name__ == "__main__":
    main()
