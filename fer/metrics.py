"""Classification metrics computed from a confusion matrix (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer.labels import EMOTIONS, NUM_CLASSES


@dataclass(frozen=True)
class Scores:
    """Accuracy, macro-F1 and per-class figures of one evaluation.

    ``confusion[i][j]`` counts faces of true class ``i`` predicted as ``j``; per-class
    lists follow :data:`fer.labels.EMOTIONS`.
    """

    accuracy: float
    macro_f1: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        """The form stored in a bundle's ``model.json``."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                name: {
                    "precision": self.precision[i],
                    "recall": self.recall[i],
                    "f1": self.f1[i],
                    "support": self.support[i],
                }
                for i, name in enumerate(EMOTIONS)
            },
            "confusion_matrix": self.confusion,
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``(k, k)`` counts of true class (rows) against predicted class (columns)."""
    idx = np.asarray(y_true, np.int64) * NUM_CLASSES + np.asarray(y_pred, np.int64)
    return np.bincount(idx, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def score(y_true: np.ndarray, probs_or_pred: np.ndarray) -> Scores:
    """Score predictions (class indices, or probabilities to take the arg-max of).

    Classes absent from ``y_true`` and never predicted get precision, recall and F1 of 0
    and are left out of the macro average.
    """
    pred = probs_or_pred.argmax(axis=1) if probs_or_pred.ndim == 2 else probs_or_pred
    cm = confusion_matrix(y_true, pred)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (actual + predicted) > 0
    return Scores(
        accuracy=float(tp.sum() / max(1, cm.sum())),
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=actual.astype(int).tolist(),
        confusion=cm.astype(int).tolist(),
    )
