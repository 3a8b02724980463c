"""Box geometry shared by detection (non-maximum suppression) and tracking (matching faces
from frame to frame): one definition of overlap. Boxes are ``(n, 4)`` arrays of corners
``x0, y0, x1, y1`` (:func:`corners` converts the ``x, y, w, h`` of timelines)."""

from __future__ import annotations

import numpy as np


def corners(xywh: np.ndarray) -> np.ndarray:
    """``x, y, w, h`` boxes as ``x0, y0, x1, y1``."""
    xywh = np.asarray(xywh, np.float64)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)


def areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas ``(n, m)`` of boxes ``a`` (n, 4) and ``b`` (m, 4)."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union ``(n, m)``."""
    inter = intersections(a, b)
    return inter / np.maximum(areas(a)[:, None] + areas(b)[None, :] - inter, 1e-9)


def containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise share ``(n, m)`` of the smaller box's area that lies inside the other."""
    smaller = np.minimum(areas(a)[:, None], areas(b)[None, :])
    return intersections(a, b) / np.maximum(smaller, 1e-9)
