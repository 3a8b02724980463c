"""Video probing, segmentation into frame ranges, and frame decoding with OpenCV.

A long video is split into segments of frame ranges so that many workers can decode it at
once. Probing demuxes the container without decoding (PyAV, FFmpeg's demuxer) to get the
presentation time of every frame the decoder will output: that table makes frame indices
exact (frame i is the i-th frame decoding gives) and lets a worker seek by time to its
segment, even in variable frame rate video, where OpenCV's seeking by frame number lands on
the wrong frames. The table leaves out the packets an MP4 edit list discards (a stream-copied
loop or cut holds packets that are never shown) and its times are the decoder's, so edited
files are indexed and counted as they play. Timestamps come from the table, never from the
decoder: OpenCV reports no usable time for the frames a decoder flushes at the end of a stream
(MPEG-2, H.264 with B-frames), so after the first frame of a segment is found by its time, the
frames that follow are the next ones of the table. AVI holds no presentation times at all (its
B-frames carry their decode order), so an AVI file is read whole and in order, frame i at
i / rate. Cover images (an audio file's attached picture) are not video streams. Animated
images (GIF, WebP) are videos. OpenCV applies rotation metadata while decoding, so frames (and
face boxes) are in displayed orientation.
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
    count the container states (its frame count, else its stream's duration x rate; the
    packets found where it states neither) less the packets its edit list discards, which a
    truncated file no longer holds. ``seekable`` is False where frames can only be indexed
    in decoding order (AVI): the video is then one segment."""

    path: str
    video_id: str
    frames: int
    fps: float
    width: int
    height: int
    rotation: int
    declared_frames: int
    seekable: bool = True


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
    gave no time table. Without a table, or when ``seekable`` is False, the segment is the
    whole video, read in order.
    """

    video_id: str
    path: str
    index: int
    start: int
    times_ms: np.ndarray | None
    fps: float
    prev_ms: float | None = None
    seekable: bool = True


#: Two presentation times closer than this (ms) are the same frame.
_EPS_MS = 0.5


def probe(path: str, video_id: str) -> tuple[VideoInfo, np.ndarray | None]:
    """Open a video, decode its first frame and read every frame's presentation time.

    Returns the info and the sorted frame times in ms (None when the container gives none).

    Raises:
        VideoError: missing, empty, not a video (an audio file with a cover image included),
            or no decodable frame.
    """
    import cv2

    try:
        stat = os.stat(path)
    except OSError as exc:
        # Name the node: on a cluster the usual cause is a path the worker nodes cannot see.
        raise VideoError(f"cannot read file on node {socket.gethostname()}: {exc.strerror}") from None
    if stat.st_size == 0:
        raise VideoError("empty file (0 bytes)")
    if is_still(path):
        frame = read_image(path)
        info = VideoInfo(path, video_id, 1, 0.0, frame.shape[1], frame.shape[0], 0, 1)
        return info, np.zeros(1)
    table = _animation(path) if is_image(path) else _demux(path)
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError("not a video OpenCV can open (unknown container or codec)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError("no decodable frame (corrupt or truncated video)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        opencv_count = max(0, int(min(cap.get(cv2.CAP_PROP_FRAME_COUNT), 2**31)))
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) if hasattr(cv2, "CAP_PROP_ORIENTATION_META") else 0
    finally:
        cap.release()
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0  # unknown: sampling by rate then keeps every frame
    times = table.times
    if not table.seekable and table.packets and fps > 0:
        times = np.round(np.arange(table.packets) * 1000.0 / fps, 3)  # AVI: one frame per period
    # What the container states; where it states nothing, the frames it holds (OpenCV's count,
    # an estimate from duration x rate, only where FFmpeg's demuxer could not read the file).
    declared = table.stated if table.stated is not None else (table.packets or opencv_count)
    declared = max(0, declared - table.discarded)
    info = VideoInfo(
        path=path,
        video_id=video_id,
        frames=max(declared if times is None else len(times), 1),
        fps=float(fps),
        width=int(frame.shape[1]),
        height=int(frame.shape[0]),
        rotation=rotation % 360,
        declared_frames=declared,
        seekable=table.seekable and times is not None,
    )
    return info, times


def is_still(path: str) -> bool:
    """Whether ``path`` is a still image: an image file of one frame (an animated WebP is a
    video; GIFs are always read as videos, see :data:`fer.video.inputs.VIDEO_EXTENSIONS`)."""
    if not is_image(path):
        return False
    if os.path.splitext(path)[1].lower() not in ANIMATED_IMAGE_EXTENSIONS:
        return True
    import cv2

    try:
        return cv2.imcount(path) <= 1
    except cv2.error:
        return True  # not decodable: reading it as a still says so


#: Image types that may hold an animation (OpenCV counts their frames).
ANIMATED_IMAGE_EXTENSIONS = (".webp",)


@dataclass(frozen=True)
class _Table:
    """What demuxing a file found: its frames' presentation times (None when unusable), the
    frames it holds (``packets``), the count it states (None: it states none), the packets
    its edit list discards, and whether frames can be found by time (False for AVI)."""

    times: np.ndarray | None
    packets: int = 0
    stated: int | None = None
    discarded: int = 0
    seekable: bool = True


#: Why a file with a cover image (an attached picture) but no video stream is not labelled.
NO_VIDEO = "no video stream: the file holds a cover image only (an audio file?)"

#: Containers whose packets carry no presentation time: FFmpeg numbers them in decoding order,
#: which B-frames reorder, and OpenCV's decoder times are then off by the reordering.
_DECODE_ORDER_FORMATS = ("avi",)


def _demux(path: str) -> _Table:
    """Demux a file without decoding (PyAV): see :class:`_Table`. Times are ms from the
    stream's start, sorted, as OpenCV's decoder reports them.

    Raises:
        VideoError: the file holds no video stream but an attached picture (a cover image).
    """
    import av

    try:
        with av.open(path) as container:
            streams = [s for s in container.streams.video if not _is_cover(s)]
            if not streams and container.streams.video:
                raise VideoError(NO_VIDEO)
            if not streams:
                return _Table(None)
            stream = streams[0]
            start = stream.start_time or 0
            pts, discarded = [], 0
            for packet in container.demux(stream):
                if packet.is_discard:
                    discarded += 1
                elif packet.size:  # demuxing ends with an empty flush packet
                    pts.append(packet.pts if packet.pts is not None else packet.dts)
            base = float(stream.time_base)
            stated = _stated_frames(stream)
            order_only = any(name in _DECODE_ORDER_FORMATS for name in container.format.name.split(","))
    except (av.FFmpegError, IndexError):
        return _Table(None)
    if order_only:
        return _Table(None, len(pts), stated, discarded, seekable=False)
    if not pts or None in pts:
        return _Table(None, len(pts), stated, discarded)
    out = np.unique(np.round((np.asarray(pts, np.float64) - start) * base * 1000.0, 3))
    # Packets without real times (all equal) cannot index frames.
    return _Table(out if len(out) == len(pts) else None, len(pts), stated, discarded)


def _is_cover(stream) -> bool:
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _stated_frames(stream) -> int | None:
    """The frame count a video stream's container states: its count, else its duration x
    its rate (MPEG streams), else None (Matroska states neither)."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and rate:
        return round(float(stream.duration * stream.time_base * rate))
    return None


def _animation(path: str) -> _Table:
    """An animated image's frame count (OpenCV reads its frames and times in order)."""
    import cv2

    frames = cv2.imcount(path)
    return _Table(None, frames, frames)


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


def segments(info: VideoInfo, times_ms: np.ndarray | None, segment_seconds: float) -> list[Segment]:
    """Split a video into segments of about ``segment_seconds`` each: one, read in order,
    where frames cannot be found by time (no time table, AVI, or a file OpenCV cannot seek
    in, such as an H.264 transport stream that starts an hour in: tried once, here)."""
    whole = [Segment(info.video_id, info.path, 0, 0, times_ms, info.fps, seekable=False)]
    if times_ms is None or not info.seekable:
        return whole
    per = max(1, round(segment_seconds * info.fps)) if info.fps > 0 else len(times_ms)
    starts = list(range(0, len(times_ms), per))
    if len(starts) > 1 and len(times_ms) - starts[-1] < MIN_TAIL_FRAMES:
        starts.pop()  # a short tail joins the segment before it
    if len(starts) > 1 and not seeks(info.path, float(times_ms[starts[len(starts) // 2]])):
        return whole
    return [
        Segment(
            info.video_id,
            info.path,
            i,
            start,
            times_ms[start:end],
            info.fps,
            float(times_ms[start - 1]) if start else None,
        )  # fmt: skip
        for i, (start, end) in enumerate(zip(starts, [*starts[1:], len(times_ms)], strict=True))
    ]


#: The shortest last segment: a decoder flushes up to 16 reordered frames at a stream's end with
#: no usable time (see :func:`_indexed`), so a segment of fewer frames could not find its first.
MIN_TAIL_FRAMES = 16


def seeks(path: str, t_ms: float) -> bool:
    """Whether seeking to ``t_ms`` in a video lands at or before it (then reading on reaches it)."""
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        landed = next(_grab_from(cap, t_ms), None)
    finally:
        cap.release()
    return landed is not None and 0.0 <= landed <= t_ms + _EPS_MS


def is_sampled(t_ms: float, prev_ms: float | None, sample_fps: float | None) -> bool:
    """Whether a frame at ``t_ms`` (the frame before it at ``prev_ms``) is kept when
    sampling ``sample_fps`` frames per second of video (None: every frame): the first
    frame of every 1/sample_fps interval of presentation time, so variable frame rate
    video is sampled evenly in time."""
    if sample_fps is None or prev_ms is None:
        return True
    return _slot(t_ms, sample_fps) != _slot(prev_ms, sample_fps)


def _slot(t_ms, sample_fps: float):
    """The sampling interval a time (ms; a float or an array) falls in."""
    return np.floor(np.asarray(t_ms, np.float64) * sample_fps / 1000.0)


def sampled_frames(times_ms: np.ndarray, prev_ms: float | None, sample_fps: float | None) -> int:
    """How many of the frames at ``times_ms`` (the frame before them at ``prev_ms``, None: they
    start the video) :func:`is_sampled` keeps: what a segment or a video adds to the progress."""
    if sample_fps is None or not len(times_ms):
        return len(times_ms)
    slots = _slot(times_ms, sample_fps)
    before = np.r_[np.nan if prev_ms is None else _slot(prev_ms, sample_fps), slots[:-1]]
    return int((slots != before).sum())  # NaN differs from every slot: a video's first frame is kept


def _grab_from(cap, t0_ms: float) -> Iterator[float]:
    """Grab frames from about ``t0_ms`` on, yielding each one's time.

    Seeking by time can land after the target, or fail; then it seeks again further back
    until it lands at or before it (or at the start), so no frame of the segment is missed.
    """
    import cv2

    back = 500.0
    while t0_ms > 0:
        target = max(0.0, t0_ms - back)
        cap.set(cv2.CAP_PROP_POS_MSEC, target)
        # A seek can also fail to land at all (near the end of a Matroska file): further back, too.
        landed = cap.grab()
        t = cap.get(cv2.CAP_PROP_POS_MSEC) if landed else math.inf
        if t <= t0_ms + _EPS_MS:
            yield t
            break
        if target == 0.0:
            if landed:
                yield t
                break
            return
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

    if is_still(segment.path):
        frame = read_image(segment.path)
        stats.grabbed = 1
        yield 0, 0.0, frame
        return
    cap = cv2.VideoCapture(segment.path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
    try:
        if not cap.isOpened():
            raise VideoError("not a video OpenCV can open")
        if segment.seekable and segment.times_ms is not None:
            frames = _indexed(_grab_from(cap, float(segment.times_ms[0]) if segment.start else 0.0), segment)
        else:
            frames = _in_order(_grab_from(cap, 0.0), segment.times_ms, segment.fps)
        for index, t_ms, prev_ms in frames:
            stats.grabbed += 1
            if is_sampled(t_ms, prev_ms, sample_fps):
                ok, frame = cap.retrieve()
                if not ok:
                    stats.grabbed -= 1  # not decoded after all: it counts as missing
                    break
                yield index, t_ms / 1000.0, frame
    finally:
        cap.release()


def _in_order(
    times: Iterator[float], table: np.ndarray | None, fps: float
) -> Iterator[tuple[int, float, float | None]]:
    """``(index, time, previous time)`` of frames read in order from the start: frame i is
    at ``table[i]`` where the table has it (AVI), else at the decoder's time, or a frame
    period after the frame before where that time does not move on (a flushed frame's)."""
    prev = None
    for index, t in enumerate(times):
        if table is not None and index < len(table):
            t = float(table[index])
        elif prev is not None and t <= prev:
            t = prev + (1000.0 / fps if fps > 0 else 1.0)
        yield index, t, prev
        prev = t


def _match(table: np.ndarray, t: float) -> int | None:
    """The position of time ``t`` in ``table`` (None: no frame there)."""
    pos = int(np.searchsorted(table, t - _EPS_MS))
    return pos if pos < len(table) and abs(table[pos] - t) <= _EPS_MS else None


def _indexed(times: Iterator[float], segment: Segment) -> Iterator[tuple[int, float, float | None]]:
    """``(index, time, previous time)`` of grabbed frames, indexed and timed by the segment's
    time table; stops past its end.

    The first frame of the segment is found by its time (frames before it are a seek's
    pre-roll). Decoding then gives the frames in order, so each next frame is the table's
    next one; a time that matches a later entry means the decoder skipped frames (corrupt
    data). Any other time is the decoder's, not the frame's: FFmpeg's flushed frames at a
    stream's end report 0 or a stale time, and reading them by time dropped them.
    """
    table = segment.times_ms
    first, last = table[0] - _EPS_MS, table[-1] + _EPS_MS
    pos: int | None = None
    for t in times:
        if pos is None:
            if t < first:
                continue  # pre-roll after a seek
            if t > last:
                return
            pos = _match(table, t)
            if pos is None:
                continue
        else:
            later = _match(table, t)
            pos = later if later is not None and later > pos else pos + 1
            if pos >= len(table):
                return
        yield segment.start + pos, float(table[pos]), float(table[pos - 1]) if pos else segment.prev_ms
