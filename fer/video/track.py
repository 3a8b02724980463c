"""Face tracking within a video: give each face a ``face_id`` that follows one person.

Tracking runs once per video over all its detections in time order (after every segment
is done), so ids stay the same across segment boundaries. Greedy IoU matching is enough
for the talking-head footage fer targets; a face unseen for longer than :func:`max_gap`
comes back with a new id, and so does every face after a cut (:mod:`fer.video.shots`).
"""

from __future__ import annotations

import numpy as np

from fer.video.boxes import corners, iou

#: A face unseen this long keeps its id...
MIN_GAP_S = 1.0
#: ...or this many sampling intervals where frames are sampled sparser (``--fps 1`` and below):
#: a gap is measured in samples, or at ``--fps 1`` every sampled frame would be a new face.
GAP_INTERVALS = 2.5


def sampling_interval(times: np.ndarray) -> float:
    """The median step between a video's distinct sampled times (0 for fewer than two)."""
    distinct = np.unique(np.asarray(times, np.float64))
    return float(np.median(np.diff(distinct))) if len(distinct) > 1 else 0.0


def max_gap(times: np.ndarray) -> float:
    """How long a face of the video sampled at ``times`` may go unseen and keep its id (and
    one emotion episode go on: :func:`fer.timelines.episodes` uses the same)."""
    return max(MIN_GAP_S, GAP_INTERVALS * sampling_interval(times))


def assign_ids(
    times: np.ndarray,
    boxes: np.ndarray,
    *,
    shots: np.ndarray | None = None,
    min_iou: float = 0.2,
    max_gap_s: float | None = None,
) -> np.ndarray:
    """Track ids for detections, ``-1`` where ``boxes`` is NaN (no face).

    Args:
        times: ``(n,)`` seconds, sorted ascending (rows of one frame share a time).
        boxes: ``(n, 4)`` x, y, w, h.
        shots: ``(n,)`` each row's shot (:mod:`fer.video.shots`): no track continues into another shot.
        min_iou: the least overlap of a face's boxes in consecutive sampled frames; low, because a
            face moves between samples (at ``--fps 1`` a turning head's box shifts by a third of its width).
        max_gap_s: how long a face may go unseen and keep its id (default: :func:`max_gap` of ``times``).
    """
    if max_gap_s is None:
        max_gap_s = max_gap(times)
    ids = np.full(len(times), -1, np.int32)
    tracks: list[tuple[int, float, np.ndarray]] = []  # (id, last time, last box)
    next_id = 0
    valid = ~np.isnan(boxes).any(axis=1)
    bounds = np.flatnonzero(np.diff(times)) + 1
    shot = None
    for rows in np.split(np.arange(len(times)), bounds):
        if shots is not None and rows.size and shots[rows[0]] != shot:
            shot, tracks = shots[rows[0]], []  # a cut: every face after it is a new one
        rows = rows[valid[rows]]
        if rows.size == 0:
            continue
        t = times[rows[0]]
        tracks = [tr for tr in tracks if t - tr[1] <= max_gap_s]
        free = set(range(rows.size))
        if tracks:
            overlap = iou(corners(np.stack([tr[2] for tr in tracks])), corners(boxes[rows]))
            for ti, di in zip(*np.unravel_index(np.argsort(-overlap, axis=None), overlap.shape), strict=True):
                if overlap[ti, di] < min_iou:
                    break
                if di in free and tracks[ti][1] < t:
                    free.discard(di)
                    ids[rows[di]] = tracks[ti][0]
                    tracks[ti] = (tracks[ti][0], t, boxes[rows[di]])
        for di in sorted(free):
            ids[rows[di]] = next_id
            tracks.append((next_id, t, boxes[rows[di]]))
            next_id += 1
    return ids
