"""Who is who: the face descriptor's verification accuracy on LFW-named photos.

Verification: the LFW-named photos of ``muxspace/facial_expressions`` (Apache-2.0; ``images/
George_W_Bush_0001.jpg`` ...: 12,794 photos of 5,616 people, 350x350 grey), clone it and pass
its folder. ``--pairs`` same-person and as many different-person pairs drawn once (seed 0),
faces found by YuNet and cut as ``fer label`` cuts them (:func:`fer.video.descriptor.chip`), and
the accuracy of "one person when closer than T": at fer's threshold
(:data:`fer.video.descriptor.SAME_PERSON`) and, LFW's protocol, with T chosen on nine tenths of
the pairs and scored on the tenth, ten times (mean and spread). Photos where no face is found
drop their pairs (counted).

Usage: python benchmarks/identity.py --faces ../facial_expressions/images [--pairs 3000]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer.video import descriptor  # noqa: E402
from fer.video.faces import create_detector  # noqa: E402

LFW_NAME = re.compile(r"^(.+)_(\d{4})\.jpg$")


def lfw_people(folder: Path) -> dict[str, list[Path]]:
    """Person -> photos, for the LFW-named photos of ``folder``."""
    people: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        match = LFW_NAME.match(path.name)
        if match:
            people[match.group(1)].append(path)
    return dict(people)


def draw_pairs(people: dict[str, list[Path]], n: int, seed: int = 0) -> list[tuple[Path, Path, bool]]:
    """``n`` same-person pairs (people with two photos or more, at most ``n / 100`` a person so
    that a few people do not fill the set) and ``n`` different-person pairs."""
    rng = np.random.default_rng(seed)
    names = sorted(people)
    multi = [p for p in names if len(people[p]) > 1]
    cap = max(1, n // 100)
    same: set[tuple[Path, Path]] = set()
    count: dict[str, int] = defaultdict(int)
    while len(same) < n:
        person = multi[rng.integers(len(multi))]
        if count[person] >= cap:
            continue
        a, b = sorted(rng.choice(len(people[person]), 2, replace=False))
        pair = (people[person][a], people[person][b])
        if pair not in same:
            same.add(pair)
            count[person] += 1
    other: set[tuple[Path, Path]] = set()
    while len(other) < n:
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = people[names[i]], people[names[j]]
        other.add((a[rng.integers(len(a))], b[rng.integers(len(b))]))
    return [(a, b, True) for a, b in sorted(same)] + [(a, b, False) for a, b in sorted(other)]


def describe(paths: list[Path]) -> dict[Path, np.ndarray]:
    """Each photo's descriptor (its largest face), for the photos where a face is found."""
    import cv2

    detect = create_detector("yunet")
    describer = descriptor.Describer()
    chips, found = [], []
    for path in paths:
        frame = cv2.imread(str(path))
        faces = [d for d in detect(frame) if np.isfinite(d.landmarks).all()]
        if faces:
            chips.append(descriptor.chip(frame, max(faces, key=lambda d: d.size).landmarks))
            found.append(path)
    vectors = np.concatenate([describer(np.stack(chips[i : i + 32])) for i in range(0, len(chips), 32)])
    return dict(zip(found, vectors, strict=True))


def best_threshold(distance: np.ndarray, same: np.ndarray) -> float:
    """The threshold that classifies the most pairs right."""
    candidates = np.unique(distance)
    right = [((distance < t) == same).mean() for t in candidates]
    return float(candidates[int(np.argmax(right))])


def verification(faces: Path, n_pairs: int) -> None:
    people = lfw_people(faces)
    pairs = draw_pairs(people, n_pairs)
    photos = sorted({p for a, b, _ in pairs for p in (a, b)})
    start = time.perf_counter()
    vectors = describe(photos)
    took = time.perf_counter() - start
    kept = [(a, b, s) for a, b, s in pairs if a in vectors and b in vectors]
    distance = np.array([np.linalg.norm(vectors[a] - vectors[b]) for a, b, _ in kept])
    same = np.array([s for _, _, s in kept])
    print(f"LFW-named photos: {sum(map(len, people.values()))} of {len(people)} people; {len(photos)} photos in "
          f"{len(pairs)} pairs, a face found in {len(vectors)} ({len(photos) - len(vectors)} without: "
          f"{len(pairs) - len(kept)} pairs dropped); {took:.0f} s to detect and describe")  # fmt: skip
    at_fixed = ((distance < descriptor.SAME_PERSON) == same).mean()
    folds = np.array_split(np.random.default_rng(1).permutation(len(kept)), 10)
    scores, thresholds = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for i, f in enumerate(folds) if i != k])
        t = best_threshold(distance[train], same[train])
        thresholds.append(t)
        scores.append(((distance[test] < t) == same[test]).mean())
    print(f"  same person: {same.sum()} pairs, distance median {np.median(distance[same]):.3f}; "
          f"different people: {(~same).sum()}, median {np.median(distance[~same]):.3f}")  # fmt: skip
    print(f"  accuracy at fer's threshold {descriptor.SAME_PERSON}: {100 * at_fixed:.2f}%")
    print(f"  10-fold (threshold chosen on 9 folds, {min(thresholds):.3f}-{max(thresholds):.3f}): "
          f"{100 * np.mean(scores):.2f}% +- {100 * np.std(scores):.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, help="muxspace/facial_expressions' images/ folder (LFW-named photos)")
    parser.add_argument("--pairs", type=int, default=3000, help="same-person pairs, and as many different-person")
    args = parser.parse_args()
    if args.faces is None or not args.faces.is_dir():
        parser.error(f"--faces: not a folder: {args.faces} (clone muxspace/facial_expressions and pass its images/)")
    verification(args.faces, args.pairs)


if __name__ == "__main__":
    main()
