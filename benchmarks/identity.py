"""Who is who: the face descriptor's verification accuracy on LFW-named photos.

Verification: the LFW-named photos of ``muxspace/facial_expressions`` (Apache-2.0; ``images/
George_W_Bush_0001.jpg`` ...: 12,794 photos of 5,616 people, 350x350 grey), clone it and pass
its folder. ``--pairs`` same-person and as many different-person pairs drawn once (seed 0),
faces found by YuNet and cut as ``fer label`` cuts them (:func:`fer.video.descriptor.chip`), and
the accuracy of "one person when closer than T": at fer's threshold
(:data:`fer.video.descriptor.SAME_PERSON`) and, LFW's protocol, with T chosen on nine tenths of
the pairs and scored on the tenth, ten times (mean and spread). Photos where no face is found
drop their pairs (counted).

Persons in clips: ``--clips`` clips of ``--shots`` shots joined by hard cuts, each shot 1-2 s
of one photo of one of ``--people`` people (LFW-named, five photos or more), slowly zoomed and
panned, a different photo each time a person returns (so a person comes back after others with
another face: light, age, pose); the sample clips' woman and man in the car are shots too.
Labelled by ``fer label`` (default settings, 2-s segments), at each ``--join`` threshold
(:data:`fer.video.persons.JOIN_BELOW`, chosen on seeds 0-19; the default clips are others):
persons' purity (the share of a person's rows that are its most frequent real person),
persons per real person (each clip's persons over its people), the share of face rows given
a person, beside face ids (tracks) per real person. Then, at fer's threshold: labelling
frames/s with and without persons, and two clips of the same people joined by ``fer people``.

Usage: python benchmarks/identity.py --faces ../facial_expressions/images [--pairs 3000]
       [--clips 20 --shots 16 --people 6 --join 0.5 0.54 0.6]
"""

from __future__ import annotations

import argparse
import atexit
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

from fer.video import descriptor  # noqa: E402
from fer.video.faces import create_detector  # noqa: E402

LFW_NAME = re.compile(r"^(.+)_(\d{4})\.jpg$")


def sample_people(folder: Path, photos: int = 6) -> Path:
    """``folder`` with LFW-named photos of two people cut from the sample clips (``--smoke``)."""
    import cv2

    from tests.tiles import read_frames

    for name, clip in (("Sample_Woman", "face_noface.mov"), ("Sample_Man", "carphone_pristine.mp4")):
        frames = read_frames(ROOT / "data" / "samples" / clip, step=7, limit=photos)
        for i, frame in enumerate(frames, 1):
            cv2.imwrite(str(folder / f"{name}_{i:04d}.jpg"), frame)
    return folder


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
    cap = max(1, n // 100, -(-n // len(multi)))  # enough for n pairs however few people there are
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
    vectors = np.concatenate([describer(np.stack(chips[i : i + 32]), mirror=True) for i in range(0, len(chips), 32)])
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


def _photo_shot(photo: Path, n: int, rng: np.random.Generator, size=(640, 360)) -> list[np.ndarray]:
    """``n`` frames of a photo on a background of a colour of its own (a change of scene: the
    photos are grey, and cuts between two grey pictures on one background go unseen by the
    shot detector, so one track would span two people), zooming from 1.0 to 1.1-1.2 and
    drifting a few pixels a frame."""
    import cv2

    img = cv2.imread(str(photo))
    side = int(size[1] * rng.uniform(0.8, 1.0))
    img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    x0, y0 = rng.uniform(0, size[0] - side), (size[1] - side) / 2
    zoom, drift = rng.uniform(0.1, 0.2), rng.uniform(-2, 2)
    hue = np.uint8([[[rng.integers(0, 180), 200, 200]]])
    background = tuple(int(c) for c in cv2.cvtColor(hue, cv2.COLOR_HSV2BGR)[0, 0])
    frames = []
    for i in range(n):
        z = 1 + zoom * i / n
        m = np.array([[z, 0, x0 + drift * i - (z - 1) * side / 2], [0, z, y0 - (z - 1) * side / 2]])
        frames.append(cv2.warpAffine(img, m, size, borderValue=background))
    return frames


def build_clip(path: Path, people: dict[str, list[Path]], shots: int, seed: int) -> list[tuple[int, str]]:
    """Write a clip of ``shots`` shots (25 fps) of ``people``'s photos and the sample clips' two
    people; return each shot's (first frame, person)."""
    import cv2

    from tests import cuts

    rng = np.random.default_rng(seed)
    samples = {"sample-woman": cuts._frames("single_face.mp4", (640, 360)),
               "sample-car": cuts._frames("carphone_pristine.mp4", (640, 360))}  # fmt: skip
    unused = {p: list(rng.permutation(photos)) for p, photos in people.items()}
    names = [*people, *samples]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 360))
    truth, written, last = [], 0, None
    for _ in range(shots):
        who = names[int(rng.choice([i for i, p in enumerate(names) if p != last and (p in samples or unused[p])]))]
        n = int(rng.integers(25, 50))
        if who in samples:
            start = int(rng.integers(0, len(samples[who]) - n))
            frames = samples[who][start : start + n]
        else:
            frames = _photo_shot(unused[who].pop(), n, rng)
        truth.append((written, who))
        for frame in frames:
            writer.write(frame)
        written += len(frames)
        last = who
    writer.release()
    return truth


def _with_who(rows: pd.DataFrame, truths: dict[str, list[tuple[int, str]]]) -> pd.DataFrame:
    """Timeline ``rows`` of built clips (``truths``: clip name -> its shots) with each row's real person."""
    return pd.concat(
        [v.assign(who=_who(v.frame, truths[vid.rsplit("-", 1)[0]])) for vid, v in rows.groupby("video_id")]
    )


def _who(frames: pd.Series, truth: list[tuple[int, str]]) -> np.ndarray:
    """The real person at each frame of a built clip (``truth``: each shot's first frame and person)."""
    starts = np.array([t[0] for t in truth])
    return np.array([t[1] for t in truth])[np.searchsorted(starts, frames.to_numpy(), side="right") - 1]


def clips(
    faces: Path, n_clips: int, shots: int, n_people: int, joins: list[float], first_seed: int, tries: int = 2
) -> None:
    from fer import timelines
    from fer.video import persons
    from fer.video.pipeline import LabelConfig, run

    pool = sorted(p for p, photos in lfw_people(faces).items() if len(photos) >= 5)
    with tempfile.TemporaryDirectory() as tmp:
        paths, truths = [], {}
        rng = np.random.default_rng(first_seed)
        for seed in range(first_seed, first_seed + n_clips):
            chosen = [pool[i] for i in rng.choice(len(pool), n_people, replace=False)]
            path = Path(tmp) / f"people{seed}.mp4"
            truths[path.stem] = build_clip(path, {p: lfw_people(faces)[p] for p in chosen}, shots, seed)
            paths.append(str(path))
        print(f"\n{n_clips} clips (seeds {first_seed}-{first_seed + n_clips - 1}) of {shots} shots, {n_people} LFW "
              "people each + the sample clips' two")  # fmt: skip
        shipped = persons.JOIN_BELOW
        for join in joins:
            persons.JOIN_BELOW = join
            out = Path(tmp) / "out"
            try:
                run(LabelConfig(inputs=tuple(paths), out=str(out), segment_seconds=2.0, overwrite=True))
            finally:
                persons.JOIN_BELOW = shipped  # what the cost and the archive join below run at
            df = timelines.read(out)
            df = df[df.face_id >= 0]
            rows, pure, found, real, tracks = 0, 0, 0, 0, 0
            for vid, video in df.groupby("video_id"):
                video = video.assign(who=_who(video.frame, truths[vid.rsplit("-", 1)[0]]))
                named = video[video.person >= 0]
                rows += len(video)
                pure += int(named.groupby("person").who.agg(lambda w: w.value_counts().iloc[0]).sum())
                found += named.person.nunique()
                real += video.who.nunique()
                tracks += video.face_id.nunique()
            described = int((df.person >= 0).sum())
            mark = " (fer's)" if join == shipped else ""
            print(f"  join below {join:.2f}{mark}: purity {100 * pure / max(1, described):.2f}%, "
                  f"{found / real:.3f} persons per real person ({tracks / real:.2f} face ids), "
                  f"{100 * described / max(1, rows):.1f}% of {rows} face rows with a person")  # fmt: skip
        cost(paths, Path(tmp) / "cost", tries)


def across(faces: Path, shots: int, n_people: int, pairs: int, merges: list[float], joins: list[float],
           seed: int) -> None:  # fmt: skip
    """``pairs`` times, two clips of the same people (other photos in each), labelled and joined by
    ``fer people`` at each join and merge threshold: archive identities per real person, purity."""
    from fer import people

    pool = sorted(p for p, photos in lfw_people(faces).items() if len(photos) >= 5)
    rng = np.random.default_rng(seed)
    settings = [(j, m) for j in joins for m in merges]
    per: dict[tuple, list[int]] = {k: [] for k in settings}
    pure, named = dict.fromkeys(settings, 0), dict.fromkeys(settings, 0)
    within = 0
    with tempfile.TemporaryDirectory() as folder:
        for k in range(pairs):
            chosen = [pool[i] for i in rng.choice(len(pool), n_people, replace=False)]
            split, found = _pair({p: lfw_people(faces)[p] for p in chosen}, shots, k + seed * 1000,
                                 Path(folder) / str(k), settings)  # fmt: skip
            within += split
            for key, (right, rows, counts) in found.items():
                pure[key], named[key] = pure[key] + right, named[key] + rows
                per[key] += counts
    print(f"\n{pairs} pairs of clips of the same {n_people} people (seed {seed}), joined by fer people "
          f"({within} people in both clips split into two persons within a clip):")  # fmt: skip
    for join, merge in settings:
        counts = np.array(per[join, merge])
        mark = " (fer's)" if (join, merge) == (people.ARCHIVE_JOIN_BELOW, people.MERGE_BELOW) else ""
        print(f"  join below {join:.2f}, merge below {merge:.2f}{mark}: {counts.mean():.3f} archive identities per "
              f"person in both clips ({(counts == 1).sum()} of {len(counts)} one identity), "
              f"purity {100 * pure[join, merge] / max(1, named[join, merge]):.2f}%")  # fmt: skip


def _pair(photos: dict[str, list[Path]], shots: int, k: int, tmp: Path, settings: list[tuple]) -> tuple[int, dict]:
    """Pair ``k``: two clips of ``photos``' people joined by ``fer people`` at each of ``settings``
    (join, merge). Returns the people in both clips split into two persons within a clip, and per
    setting (rows of an identity's main person, rows with an identity, each real person's number
    of identities)."""
    from fer import people as archive
    from fer import timelines
    from fer.video.pipeline import LabelConfig, run

    tmp.mkdir()
    truths = {}
    for seed in (100 + 2 * k, 101 + 2 * k):  # each clip draws its own photos of each person
        path = tmp / f"same{seed}.mp4"
        truths[path.stem] = build_clip(path, photos, shots, seed)
    out = tmp / "out"
    run(LabelConfig(inputs=tuple(str(tmp / f"{v}.mp4") for v in truths), out=str(out)))
    rows = timelines.scan(out, where="person >= 0", columns=["video_id", "frame", "person"])
    rows = _with_who(rows, truths)
    split = rows.groupby(["who", "video_id"]).person.nunique().gt(1).groupby("who").any()
    found: dict = {}
    for join, merge in settings:
        shutil.rmtree(out / archive.PEOPLE_DIR, ignore_errors=True)
        archive.update(out, join_below=join, merge_below=merge)
        df = timelines.scan(out, where="face_id >= 0", columns=["video_id", "frame", "identity"])
        df = _with_who(df, truths)
        with_id = df[df.identity.notna()]
        both = df.groupby("who").video_id.nunique()
        counts = with_id[with_id.who.isin(both[both == 2].index)].groupby("who").identity.nunique().tolist()
        right = int(with_id.groupby("identity").who.agg(lambda w: w.value_counts().iloc[0]).sum())
        found[join, merge] = (right, len(with_id), counts)
    return int(split[rows.groupby("who").video_id.nunique() == 2].sum()), found


def cost(paths: list[str], out: Path, tries: int = 2) -> None:
    """Frames/s of labelling ``paths`` with and without persons, alternately, best of ``tries``."""
    from fer.video.pipeline import LabelConfig, run

    best: dict[bool, float] = {True: 0.0, False: 0.0}
    for _ in range(tries):
        for persons in (False, True):
            summary = run(LabelConfig(inputs=tuple(paths), out=str(out), overwrite=True, persons=persons))
            best[persons] = max(best[persons], summary.frames / summary.seconds)
    print(f"  labelling frames/s (best of {tries}, whole runs): without persons {best[False]:.1f}, with "
          f"{best[True]:.1f} ({100 * (1 - best[True] / best[False]):+.1f}% slower)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, help="muxspace/facial_expressions' images/ folder (LFW-named photos)")
    parser.add_argument("--pairs", type=int, default=3000, help="same-person pairs, and as many different-person")
    parser.add_argument("--clips", type=int, default=20, help="clips of LFW people's photos joined by hard cuts")
    parser.add_argument("--shots", type=int, default=16, help="shots per clip")
    parser.add_argument("--people", type=int, default=6, help="LFW people per clip")
    parser.add_argument("--join", type=float, nargs="+", default=[0.5, 0.54, 0.6], help="thresholds to try")
    parser.add_argument("--first-seed", type=int, default=1000, help="the clips' first seed (0.54 was chosen on 0-19)")
    parser.add_argument("--across", type=int, default=6, help="pairs of clips of the same people for fer people")
    parser.add_argument(
        "--merge",
        type=float,
        nargs="+",
        default=[0.0, 0.45, 0.5, 0.54],
        help="fer people's merge thresholds to try (0: no merging)",
    )
    parser.add_argument("--archive-join", type=float, nargs="+", default=[0.54, 0.58],
                        help="fer people's join thresholds (fer's: people.ARCHIVE_JOIN_BELOW)")  # fmt: skip
    parser.add_argument(
        "--across-seed", type=int, default=7, help="the pairs' seed (fer people's thresholds were chosen on 8 and 9)"
    )
    parser.add_argument("--smoke", action="store_true", help="two people made of the sample clips: for the tests")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        folder = tempfile.mkdtemp(prefix="fer-identity-smoke-")
        atexit.register(shutil.rmtree, folder, True)
        args.faces = sample_people(Path(folder))
        args.pairs, args.clips, args.shots, args.people, args.across = 4, 1, 4, 2, 1
        args.join, args.merge, args.archive_join = [0.54], [0.5], [0.58]
    if args.faces is None or not args.faces.is_dir():
        parser.error(f"--faces: not a folder: {args.faces} (clone muxspace/facial_expressions and pass its images/)")
    if args.pairs:
        verification(args.faces, args.pairs)
    if args.clips:
        clips(args.faces, args.clips, args.shots, args.people, args.join, args.first_seed, tries=1 if args.smoke else 2)
    if args.across:
        across(args.faces, args.shots, args.people, args.across, args.merge, args.archive_join, args.across_seed)


if __name__ == "__main__":
    main()
