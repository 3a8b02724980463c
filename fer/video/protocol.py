"""The driver's side of labelling: rows arrive in tagged chunks, each video finishes once.

Decoders send a segment's rows in chunks as they decode (:mod:`fer.video.stages`). Every row
is tagged with its video, its segment and its place in the segment (``row``); the rows of a
segment's last chunk also carry the segment's row count (``seg_rows``, -1 on the others), and
every row its video's segment count (``n_segments``). :class:`Collector` takes batches of
rows in any order and any grouping (a classifier's batch can split a chunk or join chunks of
several videos) and:

- drops a row it already has (a task that Ray replays after its process died sends its
  chunks again), and rows of a video that is not planned or already finished;
- finishes a video when every one of its segments has all its rows, and hands them over;
- says, at the end, which planned videos never finished and which of their segments are
  missing (:meth:`Collector.unfinished`), so that they become failed entries.

It holds no Ray and writes nothing: :mod:`fer.video.output` writes what it hands over, and
the tests drive it with rows they make.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from fer.video import manifest


class Collector:
    """Collects the rows of the ``planned`` videos; see the module's docstring."""

    def __init__(self, planned: Iterable[str]):
        self.planned = set(planned)
        self.finished: set[str] = set()
        self.parts: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
        # Rows arrived, by (video, segment): each row's place -> what it holds (frame, chunk, box).
        self.seen: dict[tuple[str, int], dict[int, tuple]] = defaultdict(dict)
        self.expected: dict[tuple[str, int], int] = {}  # rows the segment's last chunk says it has
        self.complete: dict[str, set[int]] = defaultdict(set)  # segments with all their rows
        self.segments: dict[str, int] = {}
        #: Rows dropped: already had (replays), or of videos not planned or finished.
        self.dropped = 0
        #: Segments, by video, where two tries sent different rows for the same place.
        self.conflicts: dict[str, set[int]] = defaultdict(set)

    def add(self, batch: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Take a batch of rows; return the videos it finished, each with all its rows."""
        done = []
        ids = batch["video_id"]
        for vid in np.unique(ids):
            vid = str(vid)
            sel = ids == vid
            if vid not in self.planned or vid in self.finished:
                self.dropped += int(sel.sum())
                continue
            part = self._new_rows(vid, {k: v[sel] for k, v in batch.items()})
            if part is not None:
                self.parts[vid].append(part)
            if len(self.complete[vid]) == self.segments.get(vid, -1):
                done.append((vid, self._finish(vid)))
        return done

    def _new_rows(self, vid: str, part: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The rows of ``part`` not had before (None: none), with the segments they complete."""
        self.segments[vid] = int(part["n_segments"][0])
        keep = np.ones(len(part["row"]), bool)
        held = zip(part["frame"].tolist(), part["chunk"].tolist(), np.round(part["box"], 1).tolist(), strict=True)
        for i, (seg, row, total, what) in enumerate(zip(part["segment"], part["row"], part["seg_rows"], held,
                                                        strict=True)):  # fmt: skip
            key, what = (vid, int(seg)), str(what)  # str: NaN boxes (no face) compare equal
            had = self.seen[key].get(int(row))
            if had is not None:
                keep[i] = False
                if had != what:  # a replay that did not decode the same rows
                    self.conflicts[vid].add(int(seg))
                continue
            self.seen[key][int(row)] = what
            if total >= 0:
                self.expected[key] = int(total)
        self.dropped += int((~keep).sum())
        for seg in np.unique(part["segment"][keep]):
            key = (vid, int(seg))
            if len(self.seen[key]) == self.expected.get(key):
                self.complete[vid].add(int(seg))
        return {k: v[keep] for k, v in part.items()} if keep.any() else None

    def _finish(self, vid: str) -> dict[str, np.ndarray]:
        parts = self.parts.pop(vid)
        self.finished.add(vid)
        for seg in self.complete.pop(vid):
            self.seen.pop((vid, seg), None)
            self.expected.pop((vid, seg), None)
        del self.segments[vid]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def unfinished(self) -> dict[str, str]:
        """The planned videos that never finished, each with the reason for its failed entry
        (call it at the end: it finishes them)."""
        reasons = {}
        for vid in sorted(self.planned - self.finished):
            n = self.segments.get(vid)
            if n is None:
                reasons[vid] = "no row of it arrived: the process that probed or decoded it died on every try"
                continue
            missing = [str(s) for s in range(n) if s not in self.complete.get(vid, ())]
            reasons[vid] = (
                f"segment(s) {', '.join(missing)} of {n} never finished: the process that decoded or classified "
                "them died on every try (a crash, or out of memory)"
            )
        self.finished |= set(reasons)
        return reasons


#: A video counts as partial when its container states more frames than it holds by more than
#: this: 16 frames or 2% of the stated count, whichever is larger (MPEG streams state a duration,
#: which fer turns into a count). A frame of the time table that decoding does not give is
#: always missing: the table is what the file holds.
PARTIAL_MIN_FRAMES, PARTIAL_SHARE = 16, 0.02


def status(data: dict[str, np.ndarray], conflicts: Iterable[int] = ()) -> tuple[str, str]:
    """``(status, reason)`` of a finished video from all its rows (and the segments whose tries
    sent different rows, :attr:`Collector.conflicts`): failed when a segment failed, its rows
    are not one try's, or no frame was decoded at all; partial when a frame the file holds
    could not be decoded, or when it holds fewer frames than its container states; else done."""
    errors = sorted({str(e) for e in data["error"] if e})
    if errors:
        return manifest.FAILED, "; ".join(errors)
    if not (data["frame"] >= 0).any():
        return manifest.FAILED, "no frame could be decoded (the decoder's frame times match none of the file's)"
    if mismatched := sorted(set(conflicts) | set(_replays_mismatched(data))):
        return manifest.FAILED, (
            f"segment(s) {', '.join(map(str, mismatched))}: the rows of a retried segment did not line up with those "
            "of its first try (frames missing or twice); label it again"
        )
    declared, held = int(data["declared"][0]), int(data["frames"][0])
    last = data["seg_rows"] >= 0  # the rows of each segment's last chunk, which say what it missed
    firsts = np.unique(data["segment"][last], return_index=True)[1]
    undecoded = int(data["seg_missing"][last][firsts].sum())
    short = max(0, declared - held)
    tolerated = max(PARTIAL_MIN_FRAMES, PARTIAL_SHARE * declared)
    if undecoded == 0 and short <= tolerated:
        return manifest.DONE, ""
    if short > tolerated:
        return manifest.PARTIAL, (
            f"{held - undecoded} of the {declared} frames the container states could be decoded (truncated or corrupt)"
        )
    return manifest.PARTIAL, f"{held - undecoded} of the {held} frames the file holds could be decoded (corrupt data)"


def _replays_mismatched(data: dict[str, np.ndarray]) -> list[int]:
    """The segments whose rows are not one try's: a replayed task sends only the chunks its
    first try had not, which lines up only when both tries decode the same rows (they do on
    one machine; a retry on a CPU whose arithmetic differs could find another face). Then a
    chunk boundary moves: frames go missing (fewer than the last chunk counts) or come twice
    (a frame's rows in two chunks, which one try never sends)."""
    last = data["seg_rows"] >= 0
    counted = dict(zip(data["segment"][last].tolist(), data["seg_frames"][last].tolist(), strict=True))
    rows = data["frame"] >= 0
    segment, frame, chunk = data["segment"][rows], data["frame"][rows], data["chunk"][rows]
    pairs = np.unique(np.c_[segment, frame, chunk], axis=0)  # (segment, frame, chunk), each once
    frames = np.unique(pairs[:, :2], axis=0)  # (segment, frame)
    bad = set(pairs[:, 0][np.r_[False, (np.diff(pairs[:, :2], axis=0) == 0).all(axis=1)]].tolist())
    per_segment = dict(zip(*np.unique(frames[:, 0], return_counts=True), strict=True))
    bad |= {seg for seg, n in counted.items() if per_segment.get(seg, 0) != n}
    return sorted(int(s) for s in bad)
