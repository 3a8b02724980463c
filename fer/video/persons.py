"""Persons: a video's face tracks joined, across cuts and gaps, by what their faces look like.

A track (``face_id``) follows one face while the tracker holds it. About once a second
(:data:`DESCRIBE_EVERY_S`) the decoder describes each face big enough to be described
(:data:`MIN_DESCRIBE_PX`) with :mod:`fer.video.descriptor` and scores the view
(:func:`view_quality`: frontal and sharp). A track's descriptor is the mean of its
:data:`BEST_VIEWS` best-scored ones; tracks are joined by average-linkage clustering while
the mean distance between two groups stays under :data:`JOIN_BELOW`, never joining two
tracks seen in the same frame (two faces at once are two people). Tracks never described
(too small, too short, always in profile) get no person (``-1``). Persons are numbered
0, 1, ... by first appearance.

A photo is one frame, so each of its faces is a person of its own without a descriptor: its faces
are left :data:`PENDING` (descriptor NaN) and ``fer people`` describes them when asked for identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer.schema import NO_PERSON
from fer.video.descriptor import DIMS

#: How often a face is described (seconds of video): a track of a second or more has a descriptor.
DESCRIBE_EVERY_S = 1.0
#: Faces smaller than this (box side, pixels) are not described: the chip would be mostly upscaled blur.
MIN_DESCRIBE_PX = 40
#: Descriptors averaged per track: its best views.
BEST_VIEWS = 5
#: Two groups of tracks are one person while their mean distance is below this: tighter than a pair's
#: :data:`~fer.video.descriptor.SAME_PERSON` (0.6), since a wrong join mixes two people for good.
#: On 20 built clips of 8 people each (benchmarks/identity.py): 0.50 -> purity 100.00%, 1.083 persons
#: per real person; 0.54 -> 98.96%, 1.028; 0.60 -> 89%, 0.95.
JOIN_BELOW = 0.54
#: The view quality of a face chosen to be described later (a photo's: see the module), its descriptor NaN.
PENDING = 1.0


def view_quality(landmarks: np.ndarray, chip: np.ndarray) -> float:
    """How good a view of a face is for its descriptor, higher better: frontal (the nose midway
    between the eyes) times sharp (the variance of the chip's Laplacian)."""
    import cv2

    marks = landmarks.reshape(5, 2)
    eyes = marks[1, 0] - marks[0, 0]
    if not np.isfinite(marks).all() or eyes <= 0:
        return 0.0
    offset = abs(marks[2, 0] - (marks[0, 0] + marks[1, 0]) / 2) / eyes  # 0 frontal, 0.5 nose over an eye
    frontal = max(0.0, 1.0 - 2.0 * offset)
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return frontal * float(cv2.Laplacian(grey, cv2.CV_32F).var())


@dataclass(frozen=True)
class Persons:
    """A video's persons: ``row_person`` per timeline row, and per person its tracks' mean
    descriptor, its tracks, its best-scored view (a row index) and the persons seen in one
    frame with it (``apart``: never one person, in this video or across the archive)."""

    row_person: np.ndarray
    descriptors: np.ndarray  # (persons, DIMS)
    tracks: list[list[int]]
    best_rows: list[int]
    apart: list[list[int]]


def assign_persons(
    face_id: np.ndarray, frame: np.ndarray, descriptor: np.ndarray, quality: np.ndarray, *,
    join_below: float | None = None,
) -> Persons:  # fmt: skip
    """Persons for a video's rows (any order): ``face_id`` (-1: no face), the sampled ``frame``,
    each row's ``descriptor`` ``(n, DIMS)`` (NaN where the face was not described) and its view
    ``quality``; tracks are joined below ``join_below`` (default :data:`JOIN_BELOW`, read at
    the call: ``benchmarks/identity.py`` sweeps it)."""
    tracks, vectors = track_descriptors(face_id, descriptor, quality)
    if not tracks:
        return Persons(np.full(len(face_id), NO_PERSON, np.int32), np.zeros((0, DIMS), np.float32), [], [], [])
    together = _together(face_id, frame, tracks)
    groups = cluster(vectors, together, JOIN_BELOW if join_below is None else join_below)
    # Persons numbered by first appearance.
    first = {t: frame[face_id == t].min() for t in tracks}
    groups.sort(key=lambda g: min(first[tracks[i]] for i in g))
    person_of = {tracks[i]: p for p, g in enumerate(groups) for i in g}
    row_person = np.array([person_of.get(int(f), NO_PERSON) for f in face_id], np.int32)
    means = np.stack([vectors[g].mean(axis=0) for g in groups]).astype(np.float32)
    scored = np.where(np.isfinite(quality), quality, -np.inf)  # described (or pending) views only
    best = [int(np.argmax(np.where(row_person == p, scored, -np.inf))) for p in range(len(groups))]
    apart = [[q for q, h in enumerate(groups) if together[np.ix_(g, h)].any()] for g in groups]
    return Persons(row_person, means, [sorted(tracks[i] for i in g) for g in groups], best, apart)


def track_descriptors(face_id: np.ndarray, descriptor: np.ndarray, quality: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The described tracks and, for each, the mean descriptor of its :data:`BEST_VIEWS` best views
    (NaN for a track :data:`PENDING`: a view quality without a descriptor)."""
    described = (face_id >= 0) & np.isfinite(quality)
    tracks: list[int] = []
    vectors: list[np.ndarray] = []
    for track in np.unique(face_id[described]):
        rows = np.flatnonzero(described & (face_id == track))
        best = rows[np.argsort(-quality[rows], kind="stable")[:BEST_VIEWS]]
        tracks.append(int(track))
        vectors.append(descriptor[best].mean(axis=0))
    return tracks, np.array(vectors, np.float32).reshape(len(tracks), DIMS)


def _together(face_id: np.ndarray, frame: np.ndarray, tracks: list[int]) -> np.ndarray:
    """``(t, t)`` bool: the tracks seen in one frame together (they cannot be one person)."""
    index = {t: i for i, t in enumerate(tracks)}
    out = np.zeros((len(tracks), len(tracks)), bool)
    rows = np.flatnonzero(np.isin(face_id, tracks))
    order = rows[np.argsort(frame[rows], kind="stable")]
    bounds = np.flatnonzero(np.diff(frame[order])) + 1
    for members in np.split(order, bounds):
        if len(members) > 1:
            ids = [index[int(face_id[r])] for r in members]
            out[np.ix_(ids, ids)] = True
    np.fill_diagonal(out, False)
    return out


#: The distance given to two tracks seen in one frame: far above any threshold for groups of up to
#: 10^4 x 10^4 tracks, so average linkage never joins groups that hold such a pair.
APART = 1e9


def cluster(vectors: np.ndarray, apart: np.ndarray, join_below: float) -> list[list[int]]:
    """Average-linkage clustering of ``vectors`` (Euclidean; SciPy's, O(n^2)), groups merged while
    their mean distance is below ``join_below``, never two groups with a member of one
    ``apart`` from a member of the other. Returns the groups as lists of indices."""
    n = len(vectors)
    if n < 2:  # before SciPy's import (half a second): most photos and many videos hold one person
        return [[i] for i in range(n)]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform

    dist = squareform(pdist(vectors.astype(np.float64)))
    dist[np.isnan(dist)] = APART  # a track not yet described (PENDING) joins none
    dist[apart] = APART
    # Average linkage is monotonic: cutting its tree at the threshold is merging while below it.
    # fcluster joins at distances <= t: the largest float under the threshold keeps "below" strict.
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(tree, t=np.nextafter(join_below, 0), criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return list(groups.values())
