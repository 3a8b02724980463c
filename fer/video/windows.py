"""Detection where it is needed: the whole frame every N sampled frames, at every cut and at
least every :data:`MAX_WINDOW_S`, and between those, the detector on a small window around each
face the frame before had.

A face's window is :data:`WINDOW` times its side, scaled so the face is :data:`FACE_PX` pixels
to the detector: for 1080p with four faces that is four 96x96 inputs (~0.5 ms each on one core)
instead of one 960x540 input (~22 ms). Every face found still gets the detector's own box and
landmarks on every frame; a face that enters the picture is found at the next whole-frame
detection, at most N - 1 sampled frames late, and one lost from its window (it moved too fast)
is found again there. ``fer label --detect-every N``; 1 detects every whole frame.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fer.video.faces import NMS_IOU, Detection, nms

#: A face's window: this many times its side, centred on it.
WINDOW = 2.0
#: The side a tracked face has in the detector's input (never enlarged): YuNet's boxes need no
#: size correction from ~38 px on, and a 96x96 input costs ~1/40 of a 960x540 one.
FACE_PX = 48
#: Windows follow faces over at most this much video: sampled sparser (``--fps 2`` and below),
#: every frame is detected whole, since a face moves out of its window between samples.
MAX_WINDOW_S = 0.5


def windowed(detector) -> bool:
    """Whether ``detector`` can detect in a window at a chosen scale (has ``detect(frame, size)``)."""
    return callable(getattr(detector, "detect", None))


class Scheduled:
    """A detector run on whole frames every ``every`` calls (and when ``cut``, or ``t`` is
    :data:`MAX_WINDOW_S` past the last whole frame), and on windows around the last call's faces
    between. Call :meth:`reset` where frames stop being consecutive."""

    def __init__(self, detector, every: int):
        if every > 1 and not windowed(detector):
            raise ValueError("this detector detects whole frames only")
        self.detector = detector
        self.every = every
        self.reset()

    def reset(self) -> None:
        self.faces: list[Detection] = []
        self.since = self.every  # the next frame is detected whole
        self.whole_t = -np.inf

    def __call__(self, frame: np.ndarray, *, cut: bool = False, t: float = 0.0) -> list[Detection]:
        """The faces in ``frame``, the video's frame at ``t`` seconds."""
        if self.since >= self.every or cut or t - self.whole_t >= MAX_WINDOW_S:
            self.faces, self.since, self.whole_t = self.detector(frame), 0, t
        else:
            self.faces = self._in_windows(frame)
        self.since += 1
        return self.faces

    def _in_windows(self, frame: np.ndarray) -> list[Detection]:
        found = [d for face in self.faces if (d := self._window(frame, face)) is not None]
        if len(found) < 2:
            return found
        # Two tracked faces that drifted onto one person give one detection twice.
        boxes = np.array([[d.x, d.y, d.x + d.w, d.y + d.h] for d in found], np.float32)
        return [found[i] for i in nms(boxes, np.array([d.score for d in found]), NMS_IOU)]

    def _window(self, frame: np.ndarray, face: Detection) -> Detection | None:
        """The detection in ``face``'s window nearest to it, in frame pixels (None: none there)."""
        h, w = frame.shape[:2]
        side = max(face.size, 1.0)
        cx, cy, half = face.x + face.w / 2, face.y + face.h / 2, side * WINDOW / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        scale = min(1.0, FACE_PX / side)
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        found = self.detector.detect(frame[y0:y1, x0:x1], size)
        if not found:
            return None
        # The one whose centre is nearest the face's, if near: a neighbour may reach into the window.
        dist, best = min(((d.x + d.w / 2 + x0 - cx) ** 2 + (d.y + d.h / 2 + y0 - cy) ** 2, d) for d in found)
        if dist > (side / 2) ** 2:
            return None
        return replace(best, x=best.x + x0, y=best.y + y0, landmarks=best.landmarks + np.float32([x0, y0]))
