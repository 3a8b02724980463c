"""Class calibration: the maximum-likelihood fit, and `fer calibrate` end to end on a real bundle."""

from __future__ import annotations

import re

import cv2
import numpy as np

from fer import bundle
from fer.calibrate import FLOOR_MAX_STEPS, FLOOR_STEP, cross_validated, fit, fit_class_bias, recall_floor
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


def _recall(probs: np.ndarray, labels: np.ndarray, bias: np.ndarray) -> np.ndarray:
    predicted = (np.log(probs) + bias).argmax(axis=1)
    return np.array([(predicted[labels == c] == c).mean() for c in range(len(EMOTIONS))])


def test_a_recall_floor_lifts_a_confused_class_that_the_likelihood_leaves_low():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 20_000)
    scores = rng.normal(0, 1.0, (len(labels), 7))
    scores[np.arange(len(labels)), labels] += 2.0
    # Fear (2) is confused with sad (4) as on FER-2013: half its faces score as sad.
    fear = np.flatnonzero(labels == 2)[::2]
    scores[fear, 4] += 3.0
    scores[fear, 2] -= 0.5
    probs = _softmax(scores)
    likelihood = fit_class_bias(probs, labels)
    assert _recall(probs, labels, likelihood)[2] < 0.6
    floored = fit(probs, labels, min_recall=0.6)
    recall = _recall(probs, labels, floored)
    assert recall.min() >= 0.6 and recall[2] < 0.6 + 0.02  # raised just far enough
    assert abs(floored.sum()) < 1e-9 and floored[2] - floored[4] > likelihood[2] - likelihood[4]
    # No floor (or one already met) leaves the likelihood's offsets; held-out halves keep most of the floor.
    np.testing.assert_allclose(fit(probs, labels), likelihood, atol=1e-12)
    np.testing.assert_allclose(fit(probs, labels, min_recall=0.3), likelihood, atol=1e-12)
    assert cross_validated(probs, labels, min_recall=0.6).recall[2] > 0.58


def test_a_second_labelling_holds_its_own_floor():
    """FER+ faces have two labellings: a fit on the first (the crowd's majority, which reads many
    fearful faces as neutral) cannot leave the second's (FER-2013's) fear recall below its floor."""
    rng = np.random.default_rng(3)
    n = 20_000
    second = rng.integers(0, 7, n)
    first = second.copy()
    first[(second == 2) & (rng.random(n) < 0.6)] = 6  # most of the second's fear is the first's neutral
    first[rng.random(n) < 0.05] = -1  # faces without a majority
    scores = rng.normal(0, 1.0, (n, 7))
    scores[np.arange(n), second] += 1.5
    scores[first == 6, 6] += 1.5
    probs = _softmax(scores)
    one = fit(probs, first, min_recall=0.3)
    assert _recall(probs, second, one)[2] < 0.3
    both = fit(probs, first, min_recall=0.3, also=(second, 0.45))
    assert _recall(probs, second, both).min() >= 0.45 and _recall(probs, first, both).min() >= 0.3


def test_a_floor_out_of_reach_stops_after_its_steps():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 2_000)
    probs = _softmax(rng.normal(0, 1.0, (len(labels), 7)))  # uninformative: no floor of 0.9 exists
    bias = recall_floor(probs, labels, np.zeros(7), 0.9)
    assert _recall(probs, labels, bias).min() < 0.9
    assert np.abs(bias).max() <= FLOOR_MAX_STEPS * FLOOR_STEP


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


def test_calibrate_with_a_recall_floor(untrained_bundle, tiny_dataset, tmp_path):
    out = tmp_path / "floored"
    args = ("calibrate", str(untrained_bundle), "--data", str(tiny_dataset), "--out", str(out))
    proc = fer_cli(*args, "--min-recall", "0.3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    calibrated = bundle.load(out)
    assert calibrated.meta["calibration"]["min_recall"] == 0.3
    recall = [c["recall"] for c in calibrated.meta["validation"]["per_class"].values()]
    # An untrained network cannot give every class 0.3 of its faces at once: the floor is reported unmet.
    assert min(recall) < 0.3
    unmet = r"warning: --min-recall 0.3 is out of reach on these faces: \w+'s recall stays 0\.\d\d"
    assert re.search(unmet, proc.stderr)

    bad = fer_cli(*args, "--min-recall", "1.5")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --min-recall: must be a number in [0, 1]; got 1.5"
