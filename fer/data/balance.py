"""Class balancing: how many samples of each class an epoch draws, and which.

With ``augment`` balancing, every class below a target count is oversampled up to it
(repeats are made distinct by augmentation); classes above it are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BALANCE_MODES = ("augment", "class-weight", "none")


def epoch_counts(class_counts: Sequence[int], target: int | None) -> np.ndarray:
    """Samples per class in one epoch: each class raised to ``target`` (``None``: the
    largest class), never lowered; classes with no images stay at zero."""
    counts = np.asarray(class_counts, np.int64)
    goal = int(counts.max()) if target is None else int(target)
    return np.where(counts > 0, np.maximum(counts, goal), 0)


def class_weights(class_counts: Sequence[int]) -> np.ndarray:
    """Per-class loss weights ``total / (k * count)``, the usual inverse-frequency scheme
    (``k`` is the number of classes present); zero for absent classes."""
    counts = np.asarray(class_counts, np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def sample_epoch(labels: np.ndarray, per_class: Sequence[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``labels`` for one epoch, shuffled, exactly ``size`` long.

    Class ``c`` contributes ``per_class[c]`` indices, scaled to ``size``: every image of the
    class once while the quota allows, then random repeats. Exact length matters: every
    data-parallel worker must run the same number of steps.
    """
    per_class = np.asarray(per_class, np.float64)
    quota = np.floor(per_class * size / per_class.sum()).astype(np.int64)
    # Hand the rounding remainder to the classes with the largest fractional parts.
    rest = size - int(quota.sum())
    frac = per_class * size / per_class.sum() - quota
    quota[np.argsort(-frac)[:rest]] += 1
    picks = []
    for c, q in enumerate(quota):
        pool = np.flatnonzero(labels == c)
        if q == 0 or pool.size == 0:
            continue
        whole, part = divmod(int(q), pool.size)
        picks.append(np.tile(rng.permutation(pool), whole))
        picks.append(rng.choice(pool, part, replace=False))
    idx = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    if idx.size < size:  # classes with a quota but no images here: fill from the rest
        idx = np.concatenate([idx, rng.choice(len(labels), size - idx.size)])
    return rng.permutation(idx)
