"""``fer render``: a labelled video with each face's box, id, person and emotions drawn over it.

Watching the labels over the video is how people check a result with their eyes (py-feat
and the ``fer`` package render the same way). Frames are decoded as ``fer label`` decodes
them (same frame indices, rotation applied), so boxes land where they were found; with
``--fps`` sampling a sampled frame's faces stay drawn until the next sampled frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer import timelines
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.plot import COLOURS
from fer.schema import NO_FACE

#: OpenCV writes MPEG-4 Part 2 in an MP4 container with its bundled FFmpeg everywhere (H.264
#: needs an encoder the wheels do not ship); VLC, mpv, QuickTime and ffmpeg play it.
FOURCC = "mp4v"
#: Each emotion's colour, as in ``fer plot``, in OpenCV's BGR order.
BGR = tuple(tuple(int(c[i : i + 2], 16) for i in (5, 3, 1)) for c in COLOURS)


@dataclass(frozen=True)
class Rendered:
    """What :func:`render` wrote: ``frames`` frames, ``boxes`` face boxes drawn."""

    out: Path
    video_id: str
    frames: int
    boxes: int


def render(
    path: str | Path, out: str | Path, *, video: str | None = None, source: str | None = None, smooth_s: float = 0.5
) -> Rendered:
    """Draw the labels of ``video`` (any name :func:`fer.timelines.one_video` takes) over its
    frames and write them to ``out`` (MP4). ``source`` is the video file when it is no longer
    where it was labelled; ``smooth_s`` smooths the emotions as ``fer plot --smooth`` (0: raw).

    Example: ``render("out", "check.mp4", video="interview.mp4")``
    """
    import cv2

    from fer.video.decode import Segment, probe
    from fer.video.decode import iter_frames as frames_of

    video_id = timelines.one_video(path, video)
    df = timelines.read(path, videos=video_id)
    if smooth_s:
        df = timelines.smooth(df, window_s=smooth_s)
    source = source or str(df.video_path.iloc[0])
    if not os.path.isfile(source):
        raise FerError(f"--source: the labelled video {source} is not here; give its path with --source")
    faces = df[df.face_id != NO_FACE]
    drawn_at = {int(frame): rows for frame, rows in faces.groupby("frame")}
    sampled = set(df.frame.astype(int))
    info, times = probe(source, video_id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*FOURCC), info.fps or 25.0, (info.width, info.height))
    if not writer.isOpened():
        raise FerError(f"--out: OpenCV cannot write {out} (use a .mp4 name in a writable folder)")
    current, frames, boxes = None, 0, 0
    try:
        for index, _, frame in frames_of(Segment(video_id, source, 0, 0, times, info.fps, seekable=info.seekable)):
            if index in sampled:
                current = drawn_at.get(index)
            if current is not None:
                for row in current.itertuples():
                    draw_face(frame, row)
                boxes += len(current)
            writer.write(frame)
            frames += 1
    finally:
        writer.release()
    return Rendered(out, video_id, frames, boxes)


def draw_face(frame: np.ndarray, row) -> None:
    """One face's box in its emotion's colour, ``id emotion confidence`` above it and a bar
    per emotion beside it (longest: most probable)."""
    import cv2

    x, y, w, h = (int(round(v)) for v in (row.x, row.y, row.w, row.h))
    colour = BGR[EMOTIONS.index(row.emotion)]
    thick = max(2, round(min(w, h) / 40))  # visible on a 30 px face and on a 600 px one
    # Drawn inside the box, so every drawn pixel of the outline is in the recorded box.
    inset = thick // 2
    cv2.rectangle(frame, (x + inset, y + inset), (x + w - 1 - inset, y + h - 1 - inset), colour, thick)
    scale = max(0.4, min(1.2, w / 160))
    person = getattr(row, "person", -1)
    who = f"{row.face_id}" if person < 0 else f"{row.face_id} P{person}"  # face id, and its person in the video
    text = f"{who} {row.emotion} {row.confidence:.0%}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    top = max(0, y - th - base - 4)
    cv2.rectangle(frame, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
    cv2.putText(frame, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    _bars(frame, row, x + w + 4, y, max(40, w // 2), h)


def _bars(frame: np.ndarray, row, left: int, top: int, width: int, height: int) -> None:
    """Seven horizontal bars on a dark panel, one per emotion in :data:`fer.labels.EMOTIONS`
    order, each named by its first three letters when there is room."""
    import cv2

    step = max(3, height // len(EMOTIONS))
    right, bottom = min(frame.shape[1], left + width), min(frame.shape[0], top + step * len(EMOTIONS))
    if right <= left or bottom <= top:
        return
    panel = frame[top:bottom, left:right]
    panel[:] = panel // 3  # darkened, so the bars read on any background
    scale = step / 48  # the name fills about half the bar
    for i, emotion in enumerate(EMOTIONS):
        p = float(getattr(row, emotion))
        y0 = top + i * step
        if not np.isfinite(p) or y0 + step > bottom:
            continue
        cv2.rectangle(frame, (left, y0 + 1), (left + max(1, int(p * width)), y0 + step - 2), BGR[i], -1)
        if step >= 12:
            cv2.putText(frame, emotion[:3], (left + 2, y0 + step - 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
