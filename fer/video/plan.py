"""A video's segment plan: each video is probed once and cut into segments, the units that
decoders take (:mod:`fer.video.stages`) and that the driver counts a video's rows by
(:mod:`fer.video.protocol`).

A segment is a plain row (a dict of scalars and its frames' time table), so that Ray Data can
move it; :func:`as_batch` makes one the one-row batch a stage is handed.
"""

from __future__ import annotations

import numpy as np

from fer.video.decode import VideoError, probe, sampled_frames, segments
from fer.video.progress import MAX_TRIES, Reporter, attempt, settle

#: Shortest segment worth a decoder of its own: each one costs an open and a seek.
MIN_SEGMENT_S = 2.0


def segment_length(duration_s: float, segment_seconds: float, spread: int) -> float:
    """Seconds per segment: at most ``segment_seconds``, and short enough that a video
    shorter than ``spread`` segments still gives every one of ``spread`` decoders one
    (never below :data:`MIN_SEGMENT_S`)."""
    return min(segment_seconds, max(MIN_SEGMENT_S, duration_s / max(1, spread)))


def probe_segments(
    item: dict, *, segment_seconds: float, spread: int = 1, counter=None, sample_fps: float | None = None
) -> list[dict]:
    """A video ``{path, video_id}`` to its segments (or one error row), probing it once.

    The video is cut into segments of :func:`segment_length`; the frames it will sample at
    ``sample_fps`` are added to the run's progress ``counter`` (:mod:`fer.video.progress`) as its
    ``total``, and so is the probe (``probes``: a run probes each video once). A probe whose
    process died :data:`MAX_TRIES` times gives the video's error segment instead.
    """
    reporter = Reporter(counter)
    reporter.add(probes=1)
    unit = f"probe:{item['video_id']}"
    if attempt(counter, unit) > MAX_TRIES:
        return [error_segment(item, f"probing died on each of its {MAX_TRIES} tries (a crash in the demuxer, or out of "
                                    "memory)")]  # fmt: skip
    try:
        info, times = probe(item["path"], item["video_id"])
    except VideoError as exc:
        return [error_segment(item, str(exc))]
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this video's failure
        return [error_segment(item, f"probe failed: {exc}")]
    finally:
        reporter.flush()
        settle(counter, unit)
    reporter.add(total=_to_sample(info, times, sample_fps))
    reporter.flush()
    duration = len(times) / info.fps if times is not None and info.fps > 0 else 0.0
    segs = segments(info, times, segment_length(duration, segment_seconds, spread))
    return [
        _row(
            item,
            segment=s.index,
            n_segments=len(segs),
            start=s.start,
            # The time of the frame before the segment: sampling by rate continues across the cut.
            prev_ms=np.nan if s.prev_ms is None else s.prev_ms,
            times_ms=s.times_ms if s.times_ms is not None else np.zeros(0),
            has_times=s.times_ms is not None,
            seekable=s.seekable,
            fps=info.fps,
            width=info.width,
            height=info.height,
            rotation=info.rotation,
            frames=info.frames,
            declared=info.declared_frames,
        )  # fmt: skip
        for s in segs
    ]


def error_segment(item: dict, reason: str) -> dict:
    """The one segment of a video that cannot be labelled, saying why."""
    return _row(item, error=reason)


def _row(item: dict, **fields) -> dict:
    """A segment row of the video ``item``: every column, ``fields`` over the defaults (the
    columns must be the same in every row Ray Data moves)."""
    defaults = {
        "segment": 0, "n_segments": 1, "start": 0, "prev_ms": np.nan, "times_ms": np.zeros(0), "has_times": False,
        "seekable": False, "fps": 0.0, "width": 0, "height": 0, "rotation": 0, "frames": 0, "declared": 0, "error": "",
    }  # fmt: skip
    return {"video_id": item["video_id"], "video_path": item["path"], **defaults, **fields}


def _to_sample(info, times: np.ndarray | None, sample_fps: float | None) -> int:
    """The frames of a probed video that sampling keeps (estimated from the stated frame count
    and rate when the frames' times are not known)."""
    if times is not None:
        return sampled_frames(times, None, sample_fps)
    if sample_fps is None or info.fps <= 0 or sample_fps >= info.fps:
        return info.frames
    return int((info.frames - 1) * sample_fps // info.fps) + 1  # the first frame, then one an interval


def as_batch(row: dict) -> dict[str, np.ndarray]:
    """One row (a segment from :func:`probe_segments`) as the one-row batch Ray Data hands a stage."""
    batch = {}
    for k, value in row.items():
        column = np.empty(1, dtype=object) if isinstance(value, np.ndarray) else np.asarray([value])
        if isinstance(value, np.ndarray):
            column[0] = value
        batch[k] = column
    return batch
