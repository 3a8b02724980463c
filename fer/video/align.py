"""Face crops for the classifier: aligned on the eyes, framed the way FER-2013 frames faces.

A classifier trained on FER-2013 sees faces as that dataset frames them; a crop framed
differently (more background, a tilted head) costs accuracy. With landmarks, the crop is
the similarity transform that levels the eye line and puts the eyes and mouth where they
sit in FER-2013 images (:data:`FER_EYE_CENTRE`, ...: medians of YuNet's landmarks on the
FER-2013 validation faces). Without landmarks it is a square around the box.
"""

from __future__ import annotations

import math

import numpy as np

from fer.labels import FACE_SIZE
from fer.video.faces import Detection

#: Where FER-2013 puts a face, as fractions of the 48-px side: the midpoint of the eyes,
#: the distance between the eyes and from their midpoint to the mouth's centre. Medians
#: over 633 validation faces found by YuNet (4x upscaled): (24.0, 18.9) px, 17.1 px, 16.7 px.
FER_EYE_CENTRE = (0.500, 0.394)
FER_EYE_DISTANCE = 0.356
FER_EYE_MOUTH = 0.348
#: Context around a detected box (unaligned crops): the crop is its larger side grown by this fraction.
MARGIN = 0.25


def crop_face(
    frame: np.ndarray, det: Detection, *, align: bool = True, margin: float = MARGIN, size: int = FACE_SIZE
) -> np.ndarray:
    """A ``size`` x ``size`` uint8 grey crop of one face.

    ``align`` uses the eye (and mouth) landmarks when the detection has them; otherwise,
    and for detections without eyes, the crop is the box's larger side plus ``margin`` of
    it, centred on the box. Parts outside the frame replicate the edge.
    """
    marks = det.landmarks
    if align and np.isfinite(marks[:2]).all() and marks[1, 0] - marks[0, 0] > 0:
        return _aligned(frame, marks, size)
    return _boxed(frame, det, margin, size)


def alignment(landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The 2x3 affine matrix from frame pixels to the aligned ``size`` x ``size`` crop."""
    eye_l, eye_r = landmarks[0].astype(np.float64), landmarks[1].astype(np.float64)
    centre = (eye_l + eye_r) / 2
    dx, dy = eye_r - eye_l
    # The crop's side in frame pixels, from whichever of the two distances is less
    # foreshortened: the eyes come closer when the head turns, eyes and mouth when it nods.
    side = math.hypot(dx, dy) / FER_EYE_DISTANCE
    mouth = landmarks[3:5].mean(axis=0)
    if np.isfinite(mouth).all():
        side = max(side, float(np.hypot(*(mouth - centre))) / FER_EYE_MOUTH)
    scale = size / side
    angle = math.atan2(dy, dx)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    # Rotate by -angle (levels the eye line), scale, then move the eye midpoint into place.
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    target = np.array(FER_EYE_CENTRE) * size
    m[:, 2] = target - m[:, :2] @ centre
    return m


def _aligned(frame: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    import cv2

    m = alignment(landmarks, size)
    scale = math.hypot(m[0, 0], m[0, 1])
    if scale < 0.5:
        # Shrinking by more than 2x with a bilinear warp aliases: shrink a window around the
        # face with area averaging first, then warp the rest of the way.
        frame, m = prescaled(frame, m, scale, size)
    out = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out if out.ndim == 2 else cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)


def prescaled(
    frame: np.ndarray, m: np.ndarray, scale: float, size: int, *, grey: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The window of ``frame`` that the crop covers, shrunk with area averaging to twice the
    crop's resolution (one grey channel when ``grey``), and ``m`` rewritten to map that window
    to the crop."""
    import cv2

    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    window = frame[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    if grey and window.ndim == 3:  # the crop is grey: shrink one channel, not three
        window = cv2.cvtColor(window, cv2.COLOR_BGR2GRAY)
    f = 2 * scale
    small = cv2.resize(
        window, (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))), interpolation=cv2.INTER_AREA
    )
    fx, fy = small.shape[1] / (x1 - x0), small.shape[0] / (y1 - y0)
    out = np.empty_like(m)
    out[:, 0], out[:, 1] = m[:, 0] / fx, m[:, 1] / fy
    out[:, 2] = m[:, :2] @ [x0, y0] + m[:, 2]
    return small, out


def _boxed(frame: np.ndarray, det: Detection, margin: float, size: int) -> np.ndarray:
    import cv2

    from fer.image import to_face

    side = max(det.w, det.h) * (1 + margin)
    cx, cy = det.x + det.w / 2, det.y + det.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return to_face(frame[y0 : y0 + s, x0 : x0 + s], size)[0]
