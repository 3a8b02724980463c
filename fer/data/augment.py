"""Random augmentation of 48x48 grey faces: flips, small rotations, shifts and zoom,
brightness and contrast, random erasing.

Pure NumPy and OpenCV, seeded by the caller's generator, so an epoch's augmentation is
reproducible and independent of the training framework.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer.validation import option


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to augment. Zero turns a transform off.

    Attributes:
        flip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (either way).
        shift: maximum shift as a fraction of the image size (each axis).
        zoom: maximum zoom in or out as a fraction (0.1 is 0.9x to 1.1x).
        brightness: maximum brightness change as a fraction of the full range.
        contrast: maximum contrast change as a fraction (0.2 is 0.8x to 1.2x).
        erase: probability of random erasing (Zhong et al. 2017): a rectangle of 2-25% of
            the face, aspect 0.3-3.3, filled with noise, so the model cannot lean on any
            one region (a mouth or eyes hidden by a hand, a microphone, a shadow).
        mixup: alpha of mixup (Zhang et al. 2018; 0 is off): each face blended with another
            of the epoch at a Beta(alpha, alpha) share, its target blended alike (see
            :func:`mixup`); with a teacher, the teacher labels the blend.
    """

    flip: float = 0.5
    rotation: float = 10.0
    shift: float = option(0.1, "Largest random shift, a fraction of the face per axis (0.2: up to 9.6 px).")
    zoom: float = option(0.1, "Largest random zoom in or out (0.15: 0.85x-1.15x; ten-crop at test is 1.14x).")
    brightness: float = 0.2
    contrast: float = 0.2
    erase: float = option(0.0, "Probability of random erasing per training image.")
    mixup: float = option(0.0, "Mixup's alpha: faces blended in pairs at a Beta(alpha, alpha) share (0: off).")


def augment(images: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Return randomly augmented copies of ``images`` (``(n, h, w)`` uint8).

    Geometry is one affine warp per image (edges reflected, so no black borders);
    brightness and contrast are applied to the whole batch at once.
    """
    import cv2

    n, h, w = images.shape
    out = np.empty_like(images)
    angles = rng.uniform(-config.rotation, config.rotation, n)
    scales = 1.0 + rng.uniform(-config.zoom, config.zoom, n)
    shifts = rng.uniform(-config.shift, config.shift, (n, 2)) * (w, h)
    flips = rng.random(n) < config.flip
    centre = (w / 2 - 0.5, h / 2 - 0.5)
    for i in range(n):
        m = cv2.getRotationMatrix2D(centre, angles[i], scales[i])
        m[:, 2] += shifts[i]
        src = images[i, :, ::-1] if flips[i] else images[i]
        out[i] = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if config.brightness or config.contrast:
        f = out.astype(np.float32)
        mean = f.mean(axis=(1, 2), keepdims=True)
        contrast = 1.0 + rng.uniform(-config.contrast, config.contrast, (n, 1, 1))
        brightness = rng.uniform(-config.brightness, config.brightness, (n, 1, 1)) * 255.0
        out = np.clip((f - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)
    if config.erase:
        _erase(out, rng, config.erase)
    return out


#: Random erasing's area fraction and aspect ranges: the paper's defaults, except the
#: largest area (0.4 there), lowered because a 48x48 face has little area to spare.
ERASE_AREA = (0.02, 0.25)
ERASE_ASPECT = (0.3, 3.3)


def _erase(images: np.ndarray, rng: np.random.Generator, p: float) -> None:
    """Fill one random rectangle of noise into a fraction ``p`` of ``images``, in place."""
    n, h, w = images.shape
    chosen = np.flatnonzero(rng.random(n) < p)
    areas = rng.uniform(*ERASE_AREA, chosen.size) * h * w
    aspects = np.exp(rng.uniform(*np.log(ERASE_ASPECT), chosen.size))
    eh = np.clip(np.sqrt(areas * aspects).astype(int), 1, h)
    ew = np.clip(np.sqrt(areas / aspects).astype(int), 1, w)
    for i, rh, rw in zip(chosen, eh, ew, strict=True):
        y, x = rng.integers(0, h - rh + 1), rng.integers(0, w - rw + 1)
        images[i, y : y + rh, x : x + rw] = rng.integers(0, 256, (rh, rw), dtype=np.uint8)


def mixup(images: np.ndarray, rng: np.random.Generator, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend each of ``images`` with a random other one: ``(blends, partners, shares)``, where
    blend ``i`` is ``shares[i] * images[i] + (1 - shares[i]) * images[partners[i]]`` (rounded to
    uint8) and ``shares`` are drawn from Beta(alpha, alpha). Partners are a permutation of the
    batch, so a class-balanced sample stays balanced."""
    n = len(images)
    partners = rng.permutation(n)
    shares = rng.beta(alpha, alpha, n).astype(np.float32)
    w = shares[:, None, None]
    blends = w * images.astype(np.float32) + (1 - w) * images[partners].astype(np.float32)
    return np.rint(blends).astype(np.uint8), partners, shares
