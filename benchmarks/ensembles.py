"""Which ensemble to ship: every combination of bundles and TTA modes, its val figures and faces/s.

For each bundle and TTA mode, the FER-2013 val probabilities are computed once (cached in
``--cache`` by bundle id), so trying a new bundle costs one pass over val. Every combination
(a non-empty subset of the bundles, one TTA mode each) is scored as
``fer bundle --ensemble ... && fer calibrate`` would make it: members' probabilities averaged,
class offsets fitted on val (raised to ``--min-recall`` if given); the accuracy printed beside the
in-sample one is cross-validated (:func:`fer.calibrate.cross_validated`). Its faces/s on this
machine's cores is computed from each bundle's measured int8 faces/s (one pass) and the passes of
its TTA, against a baseline measured in the same run: ``--baseline``'s float network on tf-keras
(default: the shipped model; issue 16's "today" is v1's ``fer-default``).

Usage: python benchmarks/ensembles.py BUNDLE [BUNDLE ...] [--baseline BUNDLE] [--tta none flip shift]
       [--min-recall 0.55] [--top 25]
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import numpy as np
from classifier import faces_per_s, read_val
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer import bundle
from fer.calibrate import cross_validated, fit
from fer.labels import EMOTIONS
from fer.metrics import score

FEAR, SAD = EMOTIONS.index("fear"), EMOTIONS.index("sad")


def val_probs(path: str, tta: str, faces: np.ndarray, cache: Path) -> np.ndarray:
    """The bundle's val probabilities with ``tta``, from the cache when it has them."""
    model = bundle.load(path, threads=os.cpu_count() or 1)
    file = cache / f"{model.id}-{model.runtime}-{tta}.npy"
    if not file.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        np.save(file, model.predict(faces, tta=tta))
    return np.load(file)


def combinations(bundles: list[str], modes: list[str]):
    """Every non-empty subset of ``bundles``, each member with one of ``modes``."""
    for k in range(1, len(bundles) + 1):
        for members in itertools.combinations(bundles, k):
            for ttas in itertools.product(modes, repeat=k):
                yield list(zip(members, ttas, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--baseline", help="the classifier to beat, on tf-keras (default: the shipped model)")
    parser.add_argument("--tta", nargs="+", default=["none", "flip", "shift"], choices=bundle.TTA_MODES)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fer-ensembles"))
    parser.add_argument("--min-recall", type=float, default=0.0, help="as fer calibrate --min-recall")
    parser.add_argument("--top", type=int, default=25, help="rows to print, best cross-validated accuracy first")
    parser.add_argument("--smoke", action="store_true", help="20 faces a class: seconds, for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:  # its own cache: probabilities of 140 faces must not pass for all of val's
        args.cache = args.cache / "smoke"

    faces, labels = read_val(args.data, 20 if args.smoke else None)
    threads = os.cpu_count() or 1
    baseline = faces_per_s(args.baseline, "keras", threads, faces[:2000])
    speed = {b: faces_per_s(b, "litert", threads, faces[:2000]) for b in args.bundles}
    probs = {(b, t): val_probs(b, t, faces, args.cache) for b in args.bundles for t in args.tta}
    print(
        f"baseline: {args.baseline or 'the shipped model'}'s float network on tf-keras, {baseline:,.0f} faces/s "
        f"on {threads} threads"
    )
    for b in args.bundles:
        print(f"  {b}: int8 {speed[b]:,.0f} faces/s, {bundle.read_meta(b)['name']}")

    rows = []
    for combo in combinations(args.bundles, args.tta):
        mean = np.mean([probs[m] for m in combo], axis=0)
        calibrated = score(labels, bundle.reweighted(mean, fit(mean, labels, args.min_recall)))
        cv = cross_validated(mean, labels, min_recall=args.min_recall)
        seconds = sum(bundle.TTA.get(t).info["passes"] / speed[b] for b, t in combo)
        rows.append((cv.accuracy, calibrated.accuracy, score(labels, mean).accuracy, cv.macro_f1,
                     cv.recall[FEAR], cv.recall[SAD], 1 / seconds, combo))  # fmt: skip
    rows.sort(key=lambda r: r[0], reverse=True)
    print("\ncv acc | calibrated | raw | cv macro-F1 | fear/sad | faces/s (x baseline) | members")
    for cv_acc, cal, raw, f1, fear, sad, fps, combo in rows[: args.top]:
        members = " + ".join(f"{short_name(b)}:{t}" for b, t in combo)
        print(
            f"{cv_acc:.2%} | {cal:.2%} | {raw:.2%} | {f1:.2%} | {fear:.2f}/{sad:.2f} | "
            f"{fps:,.0f} ({fps / baseline:.2f}x) | {members}"
        )
    affordable = [r for r in rows if r[6] >= baseline]
    if affordable:
        best = affordable[0]
        print(
            f"\nbest at or above the baseline's faces/s: {best[0]:.2%} cross-validated, {best[6]:,.0f} faces/s; "
            f"to make it:\n{make_commands(best[7], args.data, args.min_recall)}"
        )


def short_name(path: str) -> str:
    """A bundle's name in the table: its directory, or its run's for a run's ``model`` bundle."""
    p = Path(path)
    return p.parent.name if p.name == "model" else p.name


def make_commands(combo: list[tuple[str, str]], data: Path, min_recall: float) -> str:
    """The fer commands that write ``combo`` as one calibrated bundle."""
    floor = f" --min-recall {min_recall:g}" if min_recall else ""
    if len(combo) == 1:
        ((b, t),) = combo
        return f"fer calibrate {b} --data {data} --tta {t}{floor} --out OUT  # then label with --tta {t}"
    members = " ".join(b for b, _ in combo)
    return (
        f"fer bundle --ensemble {members} --tta {','.join(t for _, t in combo)} --out OUT-raw\n"
        f"fer calibrate OUT-raw --data {data}{floor} --out OUT"
    )


if __name__ == "__main__":
    main()
