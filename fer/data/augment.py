"""Random augmentation of 48x48 grey faces: flips, small rotations, shifts and zoom,
brightness, contrast, gamma and histogram equalisation, what video does to a face (low
resolution, blur, noise, compression), random erasing.

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
        gamma: largest change of gamma (``g`` draws gamma in ``[1 - g, 1 + g]``).
        equalize: probability of a histogram equalisation: the training faces of FER-2013's
            folders are equalised and crops from video are not, so a network that sees both
            looks learns to ignore the difference.
        degrade: probability of :func:`degrade` (a face as a small, blurred, noisy, compressed
            face in archive footage is).
    """

    flip: float = 0.5
    rotation: float = 10.0
    shift: float = option(0.1, "Largest random shift, a fraction of the face per axis (0.2: up to 9.6 px).")
    zoom: float = option(0.1, "Largest random zoom in or out (0.15: 0.85x-1.15x; ten-crop at test is 1.14x).")
    brightness: float = 0.2
    contrast: float = 0.2
    erase: float = option(0.0, "Probability of random erasing per training image.")
    mixup: float = option(0.0, "Mixup's alpha: faces blended in pairs at a Beta(alpha, alpha) share (0: off).")
    gamma: float = option(0.0, "Largest random gamma change (0.4: gamma 0.6-1.4), so exposure does not decide.")
    equalize: float = option(
        0.0, "Probability of histogram-equalising a face (FER-2013's JPEGs are equalised, video crops are not)."
    )
    degrade: float = option(
        0.0, "Probability of degrading a face as archive video does: seen at 16-40 px, then blur, noise, JPEG."
    )


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
    if config.gamma:
        _gamma(out, rng, config.gamma)
    if config.equalize:
        for i in np.flatnonzero(rng.random(n) < config.equalize):
            out[i] = cv2.equalizeHist(out[i])
    if config.degrade:
        chosen = np.flatnonzero(rng.random(n) < config.degrade)
        out[chosen] = degrade(out[chosen], rng)
    if config.erase:
        _erase(out, rng, config.erase)
    return out


def _gamma(images: np.ndarray, rng: np.random.Generator, g: float) -> None:
    """Apply a random gamma in ``[1 - g, 1 + g]`` to each of ``images``, in place."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    for i, gamma in enumerate(rng.uniform(1 - g, 1 + g, len(images))):
        lut = np.clip(np.rint(255.0 * levels ** max(gamma, 0.05)), 0, 255).astype(np.uint8)
        images[i] = lut[images[i]]


#: The face sizes (pixels) archive footage shows, blur sigmas, noise sigmas and JPEG qualities
#: that :func:`degrade` draws from: faces of 16-40 px are where detection still finds them.
DEGRADE_SIZE = (16, 40)
DEGRADE_BLUR = (0.3, 1.2)
DEGRADE_NOISE = (2.0, 8.0)
DEGRADE_QUALITY = (20, 70)


def degrade(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``images`` ``(n, h, w)`` uint8 as archive video shows faces: each seen at a random size
    of :data:`DEGRADE_SIZE` and scaled back up (as ``fer label`` scales a small crop), then,
    each with probability 1/2, blurred, given sensor noise and JPEG-compressed."""
    import cv2

    n, h, w = images.shape
    out = np.empty_like(images)
    for i in range(n):
        side = int(rng.integers(DEGRADE_SIZE[0], DEGRADE_SIZE[1] + 1))
        face = cv2.resize(images[i], (side, side), interpolation=cv2.INTER_AREA)
        face = cv2.resize(face, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            face = cv2.GaussianBlur(face, (0, 0), float(rng.uniform(*DEGRADE_BLUR)))
        if rng.random() < 0.5:
            noise = rng.normal(0.0, rng.uniform(*DEGRADE_NOISE), face.shape)
            face = np.clip(face + noise, 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            quality = int(rng.integers(DEGRADE_QUALITY[0], DEGRADE_QUALITY[1] + 1))
            _, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
            face = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        out[i] = face
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
