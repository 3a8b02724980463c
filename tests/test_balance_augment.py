"""Class balancing and augmentation."""

from __future__ import annotations

import numpy as np

from fer.data.augment import AugmentConfig, augment
from fer.data.balance import class_weights, epoch_counts, sample_epoch
from fer.labels import FACE_SIZE


def test_epoch_counts_raise_minorities_only():
    assert epoch_counts([10, 2, 5], None).tolist() == [10, 10, 10]
    assert epoch_counts([10, 2, 5], 6).tolist() == [10, 6, 6]
    assert epoch_counts([10, 0, 5], None).tolist() == [10, 0, 10]


def test_sample_epoch_balances_and_has_exact_length():
    labels = np.array([0] * 100 + [1] * 5 + [2] * 40)
    rng = np.random.default_rng(0)
    idx = sample_epoch(labels, epoch_counts(np.bincount(labels), None), 301, rng)
    assert len(idx) == 301
    seen = np.bincount(labels[idx], minlength=3)
    assert seen.tolist() == [101, 100, 100] or abs(seen - 100).max() <= 1
    # Every image of a class is used before any repeats.
    assert set(idx[labels[idx] == 2]) == set(range(105, 145))
    unbalanced = np.bincount(labels[rng.choice(len(labels), 301)], minlength=3)
    assert unbalanced[1] < 40  # what balancing changes


def test_class_weights_inverse_frequency():
    w = class_weights([100, 10, 0])
    assert w[2] == 0 and w[1] == 10 * w[0]
    assert np.isclose((w[:2] * [100, 10]).sum(), 110)


def test_augment_changes_images_but_keeps_shape_and_range():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (16, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    out = augment(faces, rng)
    assert out.shape == faces.shape and out.dtype == np.uint8
    assert (out != faces).mean() > 0.5
    same = augment(faces, np.random.default_rng(1), AugmentConfig(0, 0, 0, 0, 0, 0))
    assert np.array_equal(same, faces)
    flipped = augment(faces, rng, AugmentConfig(flip=1.0, rotation=0, shift=0, zoom=0, brightness=0, contrast=0))
    assert np.array_equal(flipped, faces[:, :, ::-1])
