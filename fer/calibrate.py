"""Class calibration of a bundle: per-class offsets on its log-probabilities, fitted on a
labelled split by maximum likelihood.

A classifier trained on class-balanced epochs has learnt the priors of its epochs, not those
of the faces it will see. Shifting each class's log-probability by a constant adapts them at no
cost per face (prior-shift correction, Saerens et al. 2002); on FER-2013 the shift moves sad
faces out of neutral and costs disgust, the rarest class, a little recall. The offsets are
fitted on the split the model was selected on (FER-2013's PublicTest, ``val``): in-sample
figures could flatter them, so :func:`calibrate` also reports a cross-validated estimate
(fitted on half the split, scored on the other half).

The likelihood fit learns priors; it does not choose between classes a model confuses. On
FER-2013 fear is read as sad, and every model fer has trained keeps fear's recall near 0.45
after the fit. ``min_recall`` then raises the offsets of the classes below a floor: the
accuracy surface is flat around the likelihood's optimum, so on FER-2013 val a floor of 0.55
lifts fear from 0.43-0.46 to 0.56 at no cost in accuracy (cross-validated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.labels import NUM_CLASSES
from fer.metrics import Scores, score
from fer.validation import PROBABILITY, check

#: Newton steps of the fit (a convex problem): it converges in under 10 on FER-2013 models.
MAX_STEPS = 50
#: Cross-validation of the fit: halves of the split, drawn this many times.
CV_REPEATS = 5
#: A recall floor raises offsets this much at a time (log-probability): on FER-2013 val a step
#: moves a few faces, and a floor is reached in tens of steps.
FLOOR_STEP = 0.01
#: ...and gives up after this many steps (10 units of log-probability), leaving the floor unmet.
FLOOR_MAX_STEPS = 1000


def fit_class_bias(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Offsets ``(7,)`` (summing to 0) that maximise the likelihood of ``labels`` under
    ``probs`` reweighted by them: the class priors of the labelled faces, learnt by a model
    trained on class-balanced epochs (Saerens et al. 2002). A convex fit, by Newton's method.

    Measured on FER-2013 val (cross-validated, shipped model): +0.7 point of accuracy and
    +1.4 of macro-F1; maximising macro-F1 directly, or the likelihood with the classes
    weighted equally, scored lower on the halves they were not fitted on.
    """
    logp = np.log(np.clip(probs, 1e-12, None))
    target = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    bias = np.zeros(NUM_CLASSES)
    for _ in range(MAX_STEPS):
        z = logp + bias
        q = np.exp(z - z.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        gradient = q.mean(axis=0) - target  # of the mean negative log-likelihood
        hessian = np.diag(q.mean(axis=0)) - q.T @ q / len(q)  # singular along (1, ..., 1): pinv
        step = np.linalg.pinv(hessian) @ gradient
        bias -= step
        if np.abs(step).max() < 1e-9:
            break
    return bias - bias.mean()


def recall_floor(
    probs: np.ndarray, labels: np.ndarray, bias: np.ndarray, min_recall: float,
    also: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:  # fmt: skip
    """``bias`` with the offsets of the classes whose recall on ``labels`` is below
    ``min_recall`` raised, the lowest class's first, :data:`FLOOR_STEP` at a time, until every
    class present reaches it (or :data:`FLOOR_MAX_STEPS` pass: the floor may be out of reach).
    Raising a class takes faces from its neighbours, which may then be raised in turn.

    ``also`` is a second labelling of the same faces with its own floor (FER-2013's labels of
    FER+ faces): the class furthest below either floor is raised first, so that a fit on one
    label source cannot buy its accuracy with the other's recall. Labels of -1 are no label.
    """
    logp = np.log(np.clip(probs, 1e-12, None))
    floors = [(labels, min_recall), *([also] if also is not None else [])]
    supports = [np.bincount(lab[lab >= 0], minlength=NUM_CLASSES) for lab, _ in floors]
    bias = bias.copy()
    for _ in range(FLOOR_MAX_STEPS if any(floor > 0 for _, floor in floors) else 0):
        predicted = (logp + bias).argmax(axis=1)
        gap, raise_class = 0.0, None
        for (lab, floor), support in zip(floors, supports, strict=True):
            hits = np.bincount(lab[(predicted == lab) & (lab >= 0)], minlength=NUM_CLASSES)
            recall = np.where(support > 0, hits / np.maximum(support, 1), np.inf)
            if floor - recall.min() > gap:
                gap, raise_class = floor - recall.min(), int(recall.argmin())
        if raise_class is None:
            break
        bias[raise_class] += FLOOR_STEP
    return bias - bias.mean()


def fit(
    probs: np.ndarray, labels: np.ndarray, min_recall: float = 0.0, also: tuple[np.ndarray, float] | None = None
) -> np.ndarray:
    """The offsets :func:`calibrate` writes: :func:`fit_class_bias` on the labelled faces (labels
    of -1 are none), then :func:`recall_floor`."""
    labelled = labels >= 0
    return recall_floor(probs, labels, fit_class_bias(probs[labelled], labels[labelled]), min_recall, also)


def cross_validated(
    probs: np.ndarray, labels: np.ndarray, seed: int = 0, min_recall: float = 0.0,
    also: tuple[np.ndarray, float] | None = None,
) -> Scores:  # fmt: skip
    """Scores of the calibration on faces it was not fitted on: each half of the split
    predicted with offsets fitted (:func:`fit`) on the other half, over :data:`CV_REPEATS`
    random halvings (their predictions pooled), against ``labels`` (the faces that have one)."""
    rng = np.random.default_rng(seed)
    logp = np.log(np.clip(probs, 1e-12, None))
    truth, predicted = [], []
    for _ in range(CV_REPEATS):
        halves = np.array_split(rng.permutation(len(labels)), 2)
        for held, fit_on in (halves, halves[::-1]):
            second = None if also is None else (also[0][fit_on], also[1])
            bias = fit(probs[fit_on], labels[fit_on], min_recall, second)
            held = held[labels[held] >= 0]
            truth.append(labels[held])
            predicted.append((logp[held] + bias).argmax(axis=1))
    return score(np.concatenate(truth), np.concatenate(predicted))


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`: the bundle written, its offsets, and the split's
    figures before, after (in-sample) and cross-validated; on a FER+ root also against
    FER-2013's labels after (``fer2013``; None elsewhere)."""

    path: Path
    bias: np.ndarray
    before: Scores
    after: Scores
    cross_validated: Scores
    fer2013: Scores | None = None


def calibrate(
    model: str | Path | None, data: str | Path, out: str | Path, *, split: str = "val", tta: str = "none",
    runtime: str = "auto", min_recall: float = 0.0, fer2013_min_recall: float = 0.0,
) -> Calibration:  # fmt: skip
    """Fit class offsets for the bundle ``model`` on ``data``'s ``split`` (by likelihood, then
    raised to a recall floor of ``min_recall`` if given) and write the calibrated copy to ``out``.
    On a FER+ root the fit is on FER+'s majority; ``fer2013_min_recall`` is a floor on the
    recall of the same faces against FER-2013's labels, held at once.

    Example: ``calibrate("runs/deep/model", "fer2013/", "runs/deep-cal", min_recall=0.55).after.recall``
    """
    from fer import bundle
    from fer._ray import connect
    from fer.errors import FerError

    check("min_recall", min_recall, PROBABILITY)
    check("fer2013_min_recall", fer2013_min_recall, PROBABILITY)
    source = bundle.resolve(model)
    emotion_model = bundle.load(source, runtime=runtime)
    connect(None)
    images, labels, fer2013_labels = _faces(data, split)
    if fer2013_min_recall and fer2013_labels is None:
        raise FerError(f"--fer2013-min-recall: {data} is not a FER+ root (it has no FER-2013 labels to hold)")
    also = None if fer2013_labels is None or not fer2013_min_recall else (fer2013_labels, fer2013_min_recall)
    probs = emotion_model.predict(images, tta=tta)
    # Rounded as model.json stores it, so the figures recorded are those of the bundle written.
    bias = np.round(fit(probs, labels, min_recall, also), bundle.BIAS_DECIMALS)
    labelled = labels >= 0
    before = score(labels[labelled], probs[labelled])
    after = score(labels[labelled], bundle.reweighted(probs[labelled], bias))
    on_fer2013 = None
    if fer2013_labels is not None:
        joined = fer2013_labels >= 0
        on_fer2013 = score(fer2013_labels[joined], bundle.reweighted(probs[joined], bias))
    estimate = cross_validated(probs, labels, min_recall=min_recall, also=also)
    record = {
        "split": str(Path(data) / split), "objective": "likelihood", "min_recall": min_recall,
        "fer2013_min_recall": fer2013_min_recall, "tta": tta, "runtime": emotion_model.runtime,
        "bias": bias.tolist(), "source_id": emotion_model.id,
        **{name: {"accuracy": s.accuracy, "macro_f1": s.macro_f1, "recall": s.recall}
           for name, s in (("before", before), ("cross_validated", estimate), ("fer2013", on_fer2013)) if s},
    }  # fmt: skip
    validation = {"split": record["split"], **after.to_dict()}
    written = bundle.save_calibrated(source, out, bias, {"validation": validation, "calibration": record})
    return Calibration(written, bias, before, after, estimate, on_fer2013)


def _faces(data: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A split's faces, their labels (FER+'s majority on a FER+ root, -1 for a face without
    one) and, on a FER+ root, FER-2013's labels of the same faces (-1: none)."""
    from fer.data import fer2013, ferplus, sources

    if not ferplus.is_ferplus(data):
        images, labels = sources.read_split(data, split, targets="majority").to_numpy()
        return images, labels, None
    columns = fer2013.to_columns(ferplus.read_split(data, split, targets_mode="votes").dataset)
    joined = columns["fer2013"]
    # A root without FER+'s join to the FER-2013 labels has none to hold.
    return columns["image"], columns["majority"], joined if (joined >= 0).any() else None
