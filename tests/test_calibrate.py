"""Class calibration: the maximum-likelihood fit, and `fer calibrate` end to end on a real bundle."""

from __future__ import annotations

import re

import cv2
import numpy as np

from fer import bundle
from fer.calibrate import cross_validated, fit_class_bias
from fer.data.fer2013 import list_folder_split
from fer.labels import EMOTIONS
from tests.conftest import fer_cli


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_fit_recovers_a_known_shift_of_the_class_priors():
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1.5, (40_000, 7))
    shift = np.array([0.4, -1.0, 0.3, 0.5, -0.2, 0.0, 0.0])
    shift -= shift.mean()
    # Labels drawn from the model's probabilities shifted by `shift`: the fit must find it.
    probs_true = _softmax(scores + shift)
    labels = (probs_true.cumsum(axis=1) > rng.random((len(scores), 1))).argmax(axis=1)
    bias = fit_class_bias(_softmax(scores), labels)
    np.testing.assert_allclose(bias, shift, atol=0.06)
    # Already calibrated probabilities need no offsets, and calibration beats none on held-out halves.
    np.testing.assert_allclose(fit_class_bias(probs_true, labels), 0, atol=0.06)
    assert cross_validated(_softmax(scores), labels).accuracy > (_softmax(scores).argmax(1) == labels).mean() + 0.005


def test_calibrate_writes_a_bundle_that_applies_its_offsets(untrained_bundle, tiny_dataset, tmp_path):
    out = tmp_path / "calibrated"
    proc = fer_cli("calibrate", str(untrained_bundle), "--data", str(tiny_dataset), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"after, cross-validated \(fitted on the other half\): accuracy \d\.\d{4}", proc.stdout)
    assert proc.stdout.rstrip().endswith(f"model bundle: {out}")
    source, calibrated = bundle.load(untrained_bundle), bundle.load(out)
    bias = np.array(calibrated.meta["class_bias"])
    assert calibrated.id != source.id and calibrated.meta["calibration"]["source_id"] == source.id
    assert f"angry {bias[0]:+.2f}, disgust {bias[1]:+.2f}" in proc.stdout

    paths, labels = list_folder_split(tiny_dataset, "val")
    faces = np.stack([cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths])
    probs = calibrated.predict(faces)
    np.testing.assert_allclose(probs, bundle.reweighted(source.predict(faces), bias), atol=1e-5)
    # The maximum-likelihood condition: the calibrated probabilities' mean is each class's share.
    share = np.bincount(labels, minlength=len(EMOTIONS)) / len(labels)
    np.testing.assert_allclose(probs.mean(axis=0), share, atol=1e-4)
    accuracy = float((probs.argmax(axis=1) == np.array(labels)).mean())
    assert calibrated.meta["validation"]["accuracy"] == accuracy

    evaluated = fer_cli("evaluate", "--data", str(tiny_dataset), "--model", str(out))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"accuracy  {accuracy:.4f}" in evaluated.stdout
