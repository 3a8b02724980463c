"""The two label sources' frontier on FER+ val, and how far it lies from issue 42's done-when.

Two bundles, one trained on FER+'s votes (default: the shipped model) and one on FER-2013's labels
(default: ``training/fer2013-default``), each without its own class offsets (an ensemble's members
keep theirs, as ``fer bundle --ensemble`` of the members would), their val probabilities averaged
with weight w and 1 - w for each TTA mode: at w = 0.5 the four networks averaged. Each point is
scored as ``fer evaluate --data FERPLUS`` scores it: FER+ majority, agreed faces (and their lowest
class recall), FER-2013's labels (and theirs). Then an in-sample estimate of what calibration can
add: class offsets fitted on val itself by ``fer calibrate``'s likelihood fit on FER+'s majority,
raised until the goal's floors hold on the agreed faces and on FER-2013's labels
(:func:`fer.calibrate.recall_floor`; ``fer calibrate`` floors the majority), scored on the faces
they were fitted on. The cost printed is the multiply-adds a face of the bundles averaged, times
the TTA mode's passes. Shortfall: the points below the goal, summed (recall floors in points of
recall); "nearest" ranks by it alone, whatever the cost.

Usage: python benchmarks/frontier.py [--ferplus BUNDLE] [--fer2013 BUNDLE] [--tta none flip]
       [--weights 1 0.75 0.5] [--data ../shared/data/ferplus] [--smoke]
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
from fer.evaluate import VoteScores, agreed_faces, lowest_recall, score_votes
from fer.metrics import Scores

ROOT = Path(__file__).resolve().parents[1]
#: Issue 42's done-when: FER+ majority, agreed faces, FER-2013 labels (%), the agreed faces' and
#: FER-2013's lowest class recall, multiply-adds a face (millions).
GOAL = {"majority": 85.0, "agreed": 91.0, "fer2013": 66.0, "agreed_recall": 0.75, "fer2013_recall": 0.30, "madds": 150}


def uncalibrated(model: bundle.EmotionModel, faces: np.ndarray, tta: str) -> np.ndarray:
    """A loaded bundle's probabilities without its own class offsets (reweighting by ``-bias``
    undoes them exactly; an ensemble's members keep theirs)."""
    bias = model.meta.get("class_bias")
    probs = model.predict(faces, tta=tta)
    return probs if bias is None else bundle.reweighted(probs, -np.asarray(bias))


def lowest(s: Scores) -> float:
    """The lowest recall among the classes the faces scored have."""
    return float(s.recall[lowest_recall(s)])


def shortfall(s: VoteScores) -> float:
    """Points below the done-when's figures, summed (recall floors counted in points of recall)."""
    return (max(0.0, GOAL["majority"] - 100 * s.majority.accuracy) + max(0.0, GOAL["agreed"] - 100 * s.agreed.accuracy)
            + max(0.0, GOAL["fer2013"] - 100 * s.fer2013.accuracy)
            + 100 * max(0.0, GOAL["agreed_recall"] - lowest(s.agreed))
            + 100 * max(0.0, GOAL["fer2013_recall"] - lowest(s.fer2013)))  # fmt: skip


def line(label: str, s: VoteScores) -> str:
    """One row of the table: FER+ majority, agreed faces, their lowest recall, FER-2013's labels, theirs, shortfall."""
    return (f"{label:<34} {100 * s.majority.accuracy:6.2f} {100 * s.agreed.accuracy:7.2f} {lowest(s.agreed):6.3f}"
            f" {100 * s.fer2013.accuracy:7.2f} {lowest(s.fer2013):6.3f} {shortfall(s):9.2f}")  # fmt: skip


def floored(probs: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """``probs`` with offsets fitted on these faces: likelihood on FER+'s majority, then raised to
    the done-when's recall floors on the agreed faces and on FER-2013's labels."""
    majority, joined = columns["majority"], columns["fer2013"]
    agreed = np.where(agreed_faces(columns), majority, -1)
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
    if not all(0 <= w <= 1 for w in args.weights):
        parser.error(f"--weights: each must be between 0 and 1; got {args.weights}")
    if args.smoke:
        args.tta, args.weights = ["none"], [1.0, 0.5]
    print(this_machine(), flush=True)
    faces = ferplus.read_split(args.data, "val", targets_mode="votes", limit_per_class=20 if args.smoke else None)
    columns = fer2013.to_columns(faces.dataset)
    models = [bundle.load(p) for p in (args.ferplus, args.fer2013)]
    madds = [bundle_multiply_adds(args.ferplus), bundle_multiply_adds(args.fer2013)]
    print(f"{len(columns['image'])} FER+ val faces; runtimes {models[0].runtime} and {models[1].runtime}; "
          f"multiply-adds a face: FER+ bundle {madds[0] / 1e6:.0f} M, FER-2013 bundle {madds[1] / 1e6:.0f} M; "
          f"done-when: {GOAL}")  # fmt: skip
    print(f"{'w (FER+ share), tta':<34} {'FER+':>6} {'agreed':>7} {'min':>6} {'FER2013':>7} {'min':>6} shortfall")
    best = None
    for tta in args.tta:
        plus, f13 = (uncalibrated(m, columns["image"], tta) for m in models)
        passes = bundle.TTA.get(tta).info["passes"]
        for w in args.weights:
            probs = w * plus + (1 - w) * f13
            cost = passes * (madds[0] * (w > 0) + madds[1] * (w < 1)) / 1e6
            raw, fitted = score_votes(probs, columns), score_votes(floored(probs, columns), columns)
            print(line(f"{w:.2f} {tta}", raw))
            print(line(f"  floors fitted on val ({cost:.0f} M)", fitted), flush=True)
            if best is None or shortfall(fitted) < best[0]:
                best = (shortfall(fitted), f"w {w:.2f}, tta {tta}, {cost:.0f} M multiply-adds a face")
    print(f"nearest the done-when on accuracy and recall (offsets fitted on val itself): {best[1]}: "
          f"{best[0]:.2f} points short")  # fmt: skip


if __name__ == "__main__":
    main()
