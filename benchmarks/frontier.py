"""The two label sources' frontier on FER+ val, and how far it lies from issue 42's done-when.

Two bundles, one trained on FER+'s votes (default: the shipped model) and one on FER-2013's labels
(default: ``training/fer2013-default``), each uncalibrated (an ensemble: its members' mean), their
val probabilities averaged with weight w and 1 - w for each TTA mode. Each point is scored as
``fer evaluate --data FERPLUS`` scores it: FER+ majority, agreed faces (and their lowest class
recall), FER-2013's labels (and theirs). Then an optimistic bound: class offsets fitted on val
itself (``fer calibrate``'s likelihood fit on FER+'s majority), raised until the agreed faces'
recall floor and FER-2013's hold (:func:`fer.calibrate.recall_floor`), scored on the same faces
they were fitted on. A bundle that meets the done-when at its cost has to beat every line of the
bound; the cost printed is the multiply-adds a face of both bundles and every TTA pass.

Usage: python benchmarks/frontier.py [--ferplus BUNDLE] [--fer2013 BUNDLE] [--tta none flip]
       [--weights 1 0.75 0.5] [--data ../shared/data/ferplus]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from classifier import bundle_multiply_adds
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import bundle
from fer.calibrate import fit_class_bias, recall_floor
from fer.data import fer2013, ferplus
from fer.evaluate import VoteScores, score_votes

ROOT = Path(__file__).resolve().parents[1]
#: Issue 42's done-when: FER+ majority, agreed faces, FER-2013 labels (%), the agreed faces' and
#: FER-2013's lowest class recall, multiply-adds a face (millions).
GOAL = {"majority": 85.0, "agreed": 91.0, "fer2013": 66.0, "agreed_recall": 0.75, "fer2013_recall": 0.30, "madds": 150}


def uncalibrated(model: bundle.EmotionModel, faces: np.ndarray, tta: str) -> np.ndarray:
    """A loaded bundle's probabilities without class offsets (an ensemble: its members', each
    without theirs, averaged)."""
    if model.members:
        return np.mean([uncalibrated(m, faces, own or tta) for m, own in model.members], axis=0)
    bias = model.meta.get("class_bias")
    probs = model.predict(faces, tta=tta)
    return probs if bias is None else bundle.reweighted(probs, -np.asarray(bias))


def shortfall(s: VoteScores) -> float:
    """Points below the done-when's figures, summed (recall floors counted in points of recall)."""
    return (max(0.0, GOAL["majority"] - 100 * s.majority.accuracy) + max(0.0, GOAL["agreed"] - 100 * s.agreed.accuracy)
            + max(0.0, GOAL["fer2013"] - 100 * s.fer2013.accuracy)
            + 100 * max(0.0, GOAL["agreed_recall"] - min(s.agreed.recall))
            + 100 * max(0.0, GOAL["fer2013_recall"] - min(s.fer2013.recall)))  # fmt: skip


def line(label: str, s: VoteScores) -> str:
    return (f"{label:<28} {100 * s.majority.accuracy:6.2f} {100 * s.agreed.accuracy:7.2f} {min(s.agreed.recall):6.2f}"
            f" {100 * s.fer2013.accuracy:7.2f} {min(s.fer2013.recall):6.2f} {shortfall(s):9.2f}")  # fmt: skip


def floored(probs: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """``probs`` with offsets fitted on these faces: likelihood on FER+'s majority, then raised to
    the done-when's recall floors on the agreed faces and on FER-2013's labels."""
    majority, joined = columns["majority"], columns["fer2013"]
    agreed = np.where((majority >= 0) & (majority == joined), majority, -1)
    bias = fit_class_bias(probs[majority >= 0], majority[majority >= 0])
    bias = recall_floor(probs, agreed, bias, GOAL["agreed_recall"], also=(joined, GOAL["fer2013_recall"]))
    return bundle.reweighted(probs, bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ferplus", default=None, help="the bundle trained on FER+ (default: the shipped model)")
    parser.add_argument("--fer2013", default=str(ROOT / "training" / "fer2013-default"), help="the FER-2013 bundle")
    parser.add_argument("--tta", nargs="+", default=["none", "flip"], choices=bundle.TTA_MODES)
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.9, 0.75, 0.6, 0.5, 0.4],
                        help="the FER+ bundle's share of the average")  # fmt: skip
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ferplus")
    parser.add_argument("--smoke", action="store_true", help="20 faces a class, one TTA mode, two weights")
    args = parser.parse_args()
    if args.smoke:
        args.tta, args.weights = ["none"], [1.0, 0.5]
    print(this_machine(), flush=True)
    faces = ferplus.read_split(args.data, "val", targets_mode="votes", limit_per_class=20 if args.smoke else None)
    columns = fer2013.to_columns(faces.dataset)
    models = [bundle.load(p) for p in (args.ferplus, args.fer2013)]
    madds = [bundle_multiply_adds(args.ferplus), bundle_multiply_adds(args.fer2013)]
    print(f"{len(columns['image'])} FER+ val faces; multiply-adds a face: FER+ bundle {madds[0] / 1e6:.0f} M, "
          f"FER-2013 bundle {madds[1] / 1e6:.0f} M; done-when: {GOAL}")  # fmt: skip
    print(f"{'w (FER+ share), tta':<28} {'FER+':>6} {'agreed':>7} {'min':>6} {'FER2013':>7} {'min':>6} shortfall")
    best = None
    for tta in args.tta:
        plus, f13 = (uncalibrated(m, columns["image"], tta) for m in models)
        passes = bundle.TTA.get(tta).info["passes"]
        for w in args.weights:
            probs = w * plus + (1 - w) * f13
            cost = passes * (madds[0] * (w > 0) + madds[1] * (w < 1)) / 1e6
            raw, bound = score_votes(probs, columns), score_votes(floored(probs, columns), columns)
            print(line(f"{w:.2f} {tta}", raw))
            print(line(f"  floors fitted on val ({cost:.0f} M)", bound), flush=True)
            if best is None or shortfall(bound) < best[0]:
                best = (shortfall(bound), f"w {w:.2f}, tta {tta}, {cost:.0f} M multiply-adds a face")
    print(f"nearest the done-when (floors fitted on val itself): {best[1]}: {best[0]:.2f} points short")


if __name__ == "__main__":
    main()
