"""Shots: the hard cuts of a video, found on its decoded frames, so that no face id crosses one.

The decoder gives each sampled frame a signature (:func:`signature`: a 16x9 HSV thumbnail,
432 bytes). Once a video's frames are all in, :func:`shot_index` scores each frame by how much
its signature differs from the sampled frame before it (PySceneDetect's content value: the mean
absolute change of hue, saturation and value) and calls a cut where that score is large both
outright and against the scores around it (PySceneDetect's ``AdaptiveDetector`` rule), so fast
motion or a camera pan within a shot is not a cut. A fade through black (PySceneDetect's
``ThresholdDetector``) is a cut too, at the first frame after the black, where the picture comes
back; the black frames end the shot before. Black is decided with hysteresis: a run of frames
darker than :data:`BLACK` is black only when it goes down to :data:`DEEP_BLACK` and lasts
:data:`MIN_BLACK_S`, so dim footage whose brightness drifts around :data:`BLACK` is one shot.
Deciding with the whole video in view lets its segments be decoded apart, and the rules see
frames on both sides of a segment boundary.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Signature thumbnail (width, height) and its length in bytes.
SIGNATURE_SIZE = (16, 9)
SIGNATURE_LEN = SIGNATURE_SIZE[0] * SIGNATURE_SIZE[1] * 3
#: A cut's content value reaches this (0-255 scale; PySceneDetect's ``min_content_val``)...
MIN_SCORE = 15.0
#: ...and this multiple of the mean score of the ``WINDOW`` sampled frames on either side of it.
RATIO = 3.0
WINDOW = 2
#: A frame is black when its signature's mean value (HSV's V, 0-255) is below this
#: (PySceneDetect's ``ThresholdDetector`` default, there on the mean of the RGB values).
BLACK = 12.0
#: ... and a run of such frames is a fade through black only when one of them is darker than
#: this (a fade reaches black; dim footage only hovers near it)...
DEEP_BLACK = 6.0
#: ... and it lasts this long, from its first frame to the frame after it.
MIN_BLACK_S = 0.1
#: Shots are at least this long: a flash or a one-frame glitch is not two cuts.
MIN_SHOT_S = 0.5


def signature(frame: np.ndarray) -> np.ndarray:
    """A BGR frame's signature: ``(SIGNATURE_LEN,)`` uint8, its HSV thumbnail."""
    import cv2

    # Striding first: area-averaging a 1080p frame straight to 16x9 costs 3.5 ms, this 0.4 ms.
    step = max(1, frame.shape[1] // 256)
    small = cv2.resize(frame[::step, ::step], SIGNATURE_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1)


def changed(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two consecutive frames' signatures differ as much as a cut at least does."""
    return float(np.abs(after.astype(np.int16) - before).mean()) >= MIN_SCORE


def scores(signatures: np.ndarray) -> np.ndarray:
    """Content value of each frame against the frame before (NaN for the first)."""
    sig = np.asarray(signatures, np.int16)
    out = np.full(len(sig), np.nan)
    if len(sig) > 1:
        out[1:] = np.abs(np.diff(sig, axis=0)).mean(axis=1)
    return out


def _value(signatures: np.ndarray) -> np.ndarray:
    """Each frame's mean value (HSV's V, 0-255) over its signature."""
    return np.asarray(signatures).reshape(len(signatures), -1, 3)[..., 2].mean(axis=1)


def black(signatures: np.ndarray) -> np.ndarray:
    """Whether each frame is black (:data:`BLACK`)."""
    return _value(signatures) < BLACK


def fade_black(signatures: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Whether each frame is in a fade's black: a run of black frames (:func:`black`) that
    reaches :data:`DEEP_BLACK` and lasts :data:`MIN_BLACK_S`."""
    value = _value(signatures)
    dark = value < BLACK
    out = np.zeros(len(dark), bool)
    edges = np.flatnonzero(np.diff(np.r_[0, dark.astype(np.int8), 0]))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        after = times[end] if end < len(times) else np.inf  # a video ending on black: long enough
        if value[start:end].min() < DEEP_BLACK and after - times[start] >= MIN_BLACK_S:
            out[start:end] = True
    return out


def fades(dark: np.ndarray) -> np.ndarray:
    """The frames where a fade through black ends: the first frame after each run of black
    frames with a picture on both sides (a video opening or ending on black has no cut there)."""
    edges = np.flatnonzero(np.diff(dark.astype(np.int8))) + 1  # the first frame of each new run
    into_black = edges[dark[edges]]
    return np.array([e for e in edges[~dark[edges]] if (into_black < e).any()], np.int64)


def shot_index(signatures: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The shot (0, 1, ...) of each of a video's sampled frames, given in time order with
    their signatures ``(n, SIGNATURE_LEN)`` and times (s)."""
    score = scores(signatures)
    padded = np.pad(score, WINDOW, constant_values=np.nan)
    offsets = [k for k in range(-WINDOW, WINDOW + 1) if k]
    around = np.stack([padded[WINDOW + k : WINDOW + k + len(score)] for k in offsets])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame with no neighbour: mean NaN, no cut
        mean = np.nan_to_num(np.nanmean(around, axis=0), nan=0.0)
        hard = (score >= MIN_SCORE) & (score >= RATIO * mean)
    dark = fade_black(signatures, times)
    # Into or out of a fade's black is the fade rule's to call: near black, hue and saturation
    # jump. Dim footage that is no fade keeps the hard rule (a cut into a night scene).
    hard &= ~dark & ~np.r_[False, dark[:-1]]
    cuts, last = [], -np.inf
    for i in np.union1d(np.flatnonzero(hard), fades(dark)):
        if times[i] - last >= MIN_SHOT_S:
            cuts.append(i)
            last = times[i]
    shot = np.zeros(len(score), np.int32)
    shot[cuts] = 1
    return np.cumsum(shot, dtype=np.int32)
