"""Video probing, segmentation into frame ranges, and frame decoding with OpenCV.

A long video is split into segments of frame ranges so that many workers can decode it at
once. Probing demuxes the container without decoding (PyAV, FFmpeg's demuxer) to get the
presentation time of every frame the decoder will output: that table makes frame indices
exact (frame i is the i-th frame decoding gives) and lets a worker seek by time to its
segment, even in variable frame rate video, where OpenCV's seeking by frame number lands on
the wrong frames. The table leaves out the packets an MP4 edit list discards (a stream-copied
loop or cut holds packets that are never shown) and its times are the decoder's, so edited
files are indexed and counted as they play. Timestamps always come from the container, never
from a frame counter. OpenCV applies rotation metadata while decoding, so frames (and face
boxes) are in displayed orientation.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fer.video.inputs import is_image


class VideoError(Exception):
    """A video that cannot be labelled: the message says why, for the manifest."""


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video found. ``frames`` is the number of frames whose packets could be
    read (the container's count when it gives no time table); ``declared_frames`` is the
    count the container states less the packets its edit list discards, which a truncated
    file no longer holds."""

    path: str
    video_id: str
    frames: int
    fps: float
    width: int
    height: int
    rotation: int
    declared_frames: int


@dataclass
class DecodeStats:
    """What :func:`iter_frames` got through: ``grabbed`` frames of the segment (sampled or
    not), so the caller can tell a segment that ended early."""

    grabbed: int = 0


@dataclass(frozen=True)
class Segment:
    """Frames ``start .. start + len(times_ms) - 1`` of one video.

    ``times_ms`` are those frames' presentation times and ``prev_ms`` the time of the
    frame before the segment (None for the first); ``times_ms`` is None when the container
    gave no time table, and the segment is then the whole video, read in order.
    """

    video_id: str
    path: str
    index: int
    start: int
    times_ms: np.ndarray | None
    fps: float
    prev_ms: float | None = None


#: Two presentation times closer than this (ms) are the same frame.
_EPS_MS = 0.5


def probe(path: str, video_id: str) -> tuple[VideoInfo, np.ndarray | None]:
    """Open a video, decode its first frame and read every frame's presentation time.

    Returns the info and the sorted frame times in ms (None when the container gives none).

    Raises:
        VideoError: missing, empty, not a video, or no decodable frame.
    """
    import cv2

    try:
        stat = os.stat(path)
    except OSError as exc:
        # Name the node: on a cluster the usual cause is a path the worker nodes cannot see.
        raise VideoError(f"cannot read file on node {socket.gethostname()}: {exc.strerror}") from None
    if stat.st_size == 0:
        raise VideoError("empty file (0 bytes)")
    if is_image(path):
        frame = read_image(path)
        info = VideoInfo(path, video_id, 1, 0.0, frame.shape[1], frame.shape[0], 0, 1)
        return info, np.zeros(1)
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError("not a video OpenCV can open (unknown container or codec)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError("no decodable frame (corrupt or truncated video)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) if hasattr(cv2, "CAP_PROP_ORIENTATION_META") else 0
    finally:
        cap.release()
    times, discarded = _frame_times(path)
    declared = max(0, declared - discarded)
    count = declared if times is None else len(times)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0  # unknown: sampling by rate then keeps every frame
    info = VideoInfo(
        path=path,
        video_id=video_id,
        frames=max(count, 1),
        fps=float(fps),
        width=int(frame.shape[1]),
        height=int(frame.shape[0]),
        rotation=rotation % 360,
        declared_frames=declared,
    )
    return info, times


def read_image(path: str) -> np.ndarray:
    """A still image as a BGR frame, turned as its EXIF orientation says (OpenCV does that).

    Raises:
        VideoError: not an image OpenCV can decode.
    """
    import cv2

    frame = cv2.imread(path, cv2.IMREAD_COLOR)
    if frame is None:
        raise VideoError("not an image OpenCV can decode (corrupt or unsupported)")
    return frame


def _frame_times(path: str) -> tuple[np.ndarray | None, int]:
    """Presentation times (ms from the stream's start, sorted, as OpenCV's decoder reports
    them) of the frames decoding will output, read without decoding; and the number of
    packets the container's edit list discards. Times are None when the container gives
    no usable time for every frame."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            start = stream.start_time or 0
            pts, discarded = [], 0
            for packet in container.demux(stream):
                if packet.is_discard:
                    discarded += 1
                elif packet.size:  # demuxing ends with an empty flush packet
                    pts.append(packet.pts if packet.pts is not None else packet.dts)
            base = float(stream.time_base)
    except (av.FFmpegError, IndexError):
        return None, 0
    if not pts or None in pts:
        return None, discarded
    out = np.unique(np.round((np.asarray(pts, np.float64) - start) * base * 1000.0, 3))
    # Packets without real times (all equal) cannot index frames.
    return (out if len(out) == len(pts) else None), discarded


def segments(info: VideoInfo, times_ms: np.ndarray | None, segment_seconds: float) -> list[Segment]:
    """Split a video into segments of about ``segment_seconds`` each."""
    if times_ms is None:
        return [Segment(info.video_id, info.path, 0, 0, None, info.fps)]
    per = max(1, round(segment_seconds * info.fps)) if info.fps > 0 else len(times_ms)
    return [
        Segment(
            info.video_id,
            info.path,
            i,
            start,
            times_ms[start : start + per],
            info.fps,
            float(times_ms[start - 1]) if start else None,
        )  # fmt: skip
        for i, start in enumerate(range(0, len(times_ms), per))
    ]


def is_sampled(t_ms: float, prev_ms: float | None, sample_fps: float | None) -> bool:
    """Whether a frame at ``t_ms`` (the frame before it at ``prev_ms``) is kept when
    sampling ``sample_fps`` frames per second of video (None: every frame): the first
    frame of every 1/sample_fps interval of presentation time, so variable frame rate
    video is sampled evenly in time."""
    if sample_fps is None or prev_ms is None:
        return True
    return math.floor(t_ms * sample_fps / 1000.0) != math.floor(prev_ms * sample_fps / 1000.0)


def _grab_from(cap, t0_ms: float) -> Iterator[float]:
    """Grab frames from about ``t0_ms`` on, yielding each one's time.

    Seeking by time can land after the target; then it seeks again further back until it
    lands at or before it (or at the start), so no frame of the segment is missed.
    """
    import cv2

    back = 500.0
    while t0_ms > 0:
        target = max(0.0, t0_ms - back)
        cap.set(cv2.CAP_PROP_POS_MSEC, target)
        if not cap.grab():
            return
        t = cap.get(cv2.CAP_PROP_POS_MSEC)
        if t <= t0_ms + _EPS_MS or target == 0.0:
            yield t
            break
        back *= 4
    while cap.grab():
        yield cap.get(cv2.CAP_PROP_POS_MSEC)


def iter_frames(
    segment: Segment, sample_fps: float | None = None, *, threads: int = 0, stats: DecodeStats | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, time_s, bgr_frame)`` for the sampled frames of a segment.

    Frames outside the segment or not sampled are grabbed but never converted to images.
    ``threads`` caps the decoder's threads (0: FFmpeg's default, one per core); a pipeline
    that runs one decoder per core wants 1, so decoders do not fight over cores. ``stats``
    counts the segment's frames grabbed, sampled or not.
    """
    stats = stats if stats is not None else DecodeStats()
    import cv2

    if is_image(segment.path):
        frame = read_image(segment.path)
        stats.grabbed = 1
        yield 0, 0.0, frame
        return
    cap = cv2.VideoCapture(segment.path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
    try:
        if not cap.isOpened():
            raise VideoError("not a video OpenCV can open")
        times = segment.times_ms
        if times is None:
            frames = _counted(_grab_from(cap, 0.0))
        else:
            frames = _indexed(_grab_from(cap, float(times[0]) if segment.start else 0.0), segment)
        for index, t_ms, prev_ms in frames:
            stats.grabbed += 1
            if is_sampled(t_ms, prev_ms, sample_fps):
                ok, frame = cap.retrieve()
                if not ok:
                    break
                yield index, t_ms / 1000.0, frame
    finally:
        cap.release()


def _counted(times: Iterator[float]) -> Iterator[tuple[int, float, float | None]]:
    """``(index, time, previous time)`` of frames read in order from the start."""
    prev = None
    for index, t in enumerate(times):
        yield index, t, prev
        prev = t


def _indexed(times: Iterator[float], segment: Segment) -> Iterator[tuple[int, float, float | None]]:
    """``(index, time, previous time)`` of grabbed frames, indexed by the segment's time
    table; stops past its end."""
    table = segment.times_ms
    first, last = table[0] - _EPS_MS, table[-1] + _EPS_MS
    for t in times:
        if t < first:
            continue  # pre-roll after a seek
        if t > last:
            return
        pos = int(np.searchsorted(table, t - _EPS_MS))
        if pos < len(table) and abs(table[pos] - t) <= _EPS_MS:
            yield segment.start + pos, t, float(table[pos - 1]) if pos else segment.prev_ms
