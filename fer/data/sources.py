"""One entry point for every labelled-face dataset fer reads, whatever its layout.

- a FER+ root (``fer2013new.csv`` beside ``FER2013Train/``...): :mod:`fer.data.ferplus`;
- a FER-2013 CSV or image folders (``ROOT/<split>/<class>/``): :mod:`fer.data.fer2013`.

``targets`` only means something for FER+ (whose faces carry votes); on the other layouts,
with one label per face, every mode trains on that label.
"""

from __future__ import annotations

from pathlib import Path

from fer.data import fer2013, ferplus
from fer.errors import FerError

#: Training targets (``--targets``); see :mod:`fer.data.ferplus`.
TARGETS = ferplus.TARGETS
DEFAULT_TARGETS = "votes"


def read_split(
    source: str | Path, split: str, *, targets: str = DEFAULT_TARGETS, limit_per_class: int | None = None
) -> fer2013.FaceSplit:
    """Read one split of ``source`` (see the module) as a :class:`fer.data.fer2013.FaceSplit`."""
    if ferplus.is_ferplus(source):
        return ferplus.read_split(source, split, targets_mode=targets, limit_per_class=limit_per_class)
    if not ferplus.TARGET_MODES.accepts(targets):
        raise FerError(f"--targets: must be {ferplus.TARGET_MODES}; got {targets!r}")
    return fer2013.read_split(source, split, limit_per_class=limit_per_class)


def list_photos(root: str | Path, split: str) -> tuple[list[str], list[int]]:
    """The uncropped photos of ``split`` and their labels: a facial_expressions checkout's split
    (:mod:`fer.data.wild`), else the image folders ``root/<split>/<class>/``."""
    from fer.data import wild

    return wild.list_split(root, split) if wild.is_wild(root) else fer2013.list_folder_split(root, split)


def validation_targets(targets: str) -> str:
    """What a validation split is scored against when training on ``targets``: FER+'s
    majority (the paper's test protocol), or FER-2013's label when that is the target."""
    return "fer2013" if targets == "fer2013" else "majority"


def split_counts(source: str | Path, targets: str = DEFAULT_TARGETS) -> dict[str, list[int]]:
    """Faces per class of every split of ``source``, without decoding an image."""
    if ferplus.is_ferplus(source):
        return ferplus.split_counts(source, targets)
    return fer2013.split_counts(source)
