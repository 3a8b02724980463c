"""The emotion classes, in the one canonical order used everywhere in fer.

The order is that of the original FER-2013 CSV release (its ``emotion`` column), so
integer labels read from the CSV need no remapping.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES: int = len(EMOTIONS)

#: FER-2013 face size: every face handed to a model starts as a 48x48 grey image.
FACE_SIZE: int = 48


def label_index(name: str) -> int:
    """Return the integer label of an emotion name (case-insensitive).

    Raises:
        KeyError: ``name`` is not one of :data:`EMOTIONS`.
    """
    key = name.strip().lower()
    try:
        return EMOTIONS.index(key)
    except ValueError:
        raise KeyError(name) from None
