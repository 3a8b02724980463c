"""The model-input contract: a face is a 48x48 uint8 grey image."""

from __future__ import annotations

import numpy as np

from fer.labels import FACE_SIZE

#: Still-image files fer reads everywhere (datasets, `fer label`, `fer evaluate`): what OpenCV decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def to_face(image: np.ndarray, size: int = FACE_SIZE) -> tuple[np.ndarray, bool]:
    """Convert an image of any size, bit depth and channel count (BGR/BGRA as OpenCV
    decodes) to a ``size`` x ``size`` uint8 grey face.

    Returns the face and whether a conversion (colour to grey, resize, bit depth) was needed.
    """
    import cv2

    converted = False
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        converted = True
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
        image = cv2.cvtColor(image, code) if code is not None else image[..., 0]
        converted = True
    if image.shape != (size, size):
        # INTER_AREA averages when shrinking (no aliasing), the usual case for face crops.
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        converted = True
    return np.ascontiguousarray(image), converted


def to_faces(images: np.ndarray | list[np.ndarray], size: int = FACE_SIZE) -> np.ndarray:
    """Stack images of any form into an ``(n, size, size)`` uint8 batch of grey faces."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[1:] == (size, size):
        return images
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    faces = [to_face(np.asarray(img), size)[0] for img in images]
    return np.stack(faces) if faces else np.zeros((0, size, size), np.uint8)
