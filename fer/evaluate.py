"""Evaluate a model bundle on a labelled split, and format the figures for people."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.data import fer2013, ferplus, sources
from fer.labels import EMOTIONS
from fer.metrics import Scores, score

if TYPE_CHECKING:
    from fer.crop import CropConfig


def load_model(model, runtime: str = "auto"):
    """``model`` as a loaded :class:`fer.bundle.EmotionModel`: a bundle path, None (the shipped
    model) or an already loaded model (returned as it is)."""
    from fer import bundle

    return model if isinstance(model, bundle.EmotionModel) else bundle.load(model, runtime=runtime)


def evaluate(
    model, data: str | Path, split: str = "val", *, tta: str = "none", runtime: str = "auto",
    limit_per_class: int | None = None,
) -> Scores:  # fmt: skip
    """Score a model (see :func:`load_model`) on one split of a dataset, read with Ray Data
    (on the Ray this process is connected to, else a local one).

    Example: ``evaluate("runs/deep/model", "fer2013/", "val", tta="flip").accuracy``
    """
    from fer._ray import connect

    model = load_model(model, runtime)
    connect(None)
    faces = sources.read_split(data, split, targets="majority", limit_per_class=limit_per_class)
    images, labels = faces.to_numpy()
    return score(labels, model.predict(images, tta=tta))


@dataclass(frozen=True)
class VoteScores:
    """Scores of a model on FER+ faces, each against what it is measured on.

    ``majority``: against FER+'s majority (faces that have one); ``cross_entropy``: mean
    cross-entropy (nats) of the vote distribution against the model's probabilities (every
    kept face); ``agreed``: on the faces whose FER-2013 label is their FER+ majority (labels
    nobody disputes); ``fer2013``: against FER-2013's label (faces the join pairs confidently).
    """

    majority: Scores
    cross_entropy: float
    agreed: Scores
    fer2013: Scores
    faces: int


def agreed_faces(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Which FER+ faces have a majority that is also their FER-2013 label (labels nobody disputes)."""
    majority = columns["majority"]
    return (majority != ferplus.NO_LABEL) & (majority == columns["fer2013"])


def score_votes(probs: np.ndarray, columns: dict[str, np.ndarray]) -> VoteScores:
    """Score probabilities ``(n, 7)`` of the FER+ faces ``columns`` (as
    :func:`fer.data.fer2013.to_columns` returns them, read with ``--targets votes``)."""
    majority, joined = columns["majority"], columns["fer2013"]
    has_majority, has_join = majority != ferplus.NO_LABEL, joined != ferplus.NO_LABEL
    agreed = agreed_faces(columns)
    cross_entropy = -(columns["votes"] * np.log(np.clip(probs, 1e-7, 1.0))).sum(axis=1).mean()
    return VoteScores(
        majority=score(majority[has_majority], probs[has_majority]),
        cross_entropy=float(cross_entropy),
        agreed=score(majority[agreed], probs[agreed]),
        fer2013=score(joined[has_join], probs[has_join]),
        faces=len(probs),
    )


def evaluate_votes(
    model, root: str | Path, split: str = "val", *, tta: str = "none", runtime: str = "auto",
    limit_per_class: int | None = None,
) -> VoteScores:  # fmt: skip
    """Score a model (see :func:`load_model`) on one split of a FER+ root: every face FER+
    keeps (see :mod:`fer.data.ferplus`), scored as :class:`VoteScores` says.

    Example: ``evaluate_votes(None, "ferplus/", "val", tta="flip").agreed.recall``
    """
    from fer._ray import connect

    model = load_model(model, runtime)
    connect(None)
    faces = ferplus.read_split(root, split, targets_mode="votes", limit_per_class=limit_per_class)
    columns = fer2013.to_columns(faces.dataset)
    return score_votes(model.predict(columns["image"], tta=tta), columns)


@dataclass(frozen=True)
class DetectedScores:
    """Scores of the detect, align and classify path on uncropped labelled images.

    ``scores`` counts only images where a face was found; ``end_to_end`` is the accuracy
    over every image, a missed face counting as wrong.
    """

    scores: Scores
    images: int
    missed: int
    end_to_end: float


def evaluate_detected(
    model,
    data: str | Path,
    split: str,
    crops: CropConfig,
    *,
    tta: str = "none",
    limit_per_class: int | None = None,
    runtime: str = "auto",
) -> DetectedScores:
    """Score a model (see :func:`load_model`) on the uncropped images of
    ``data/<split>/<class>/`` or of a facial_expressions checkout's split (see
    :func:`fer.data.sources.list_photos`): each image goes through face detection (its largest face)
    and cropping as in ``fer label``.

    Example: ``evaluate_detected(None, "photos/", "val", CropConfig("yunet", 20)).end_to_end``
    """
    from fer.crop import crop

    model = load_model(model, runtime)
    paths, labels = sources.list_photos(data, split)
    if limit_per_class is not None:
        paths, labels = fer2013.take_per_class(paths, labels, limit_per_class)
    found = crop(paths, labels, crops)
    probs = model.predict(found.faces, tta=tta)
    correct = int((probs.argmax(axis=1) == found.labels).sum()) if len(probs) else 0
    return DetectedScores(score(found.labels, probs), len(paths), found.missed, correct / max(1, len(paths)))


def format_detected(result: DetectedScores, crops: CropConfig) -> str:
    """How many faces were found, the end-to-end accuracy, the lowest recall and the share
    called neutral, then :func:`format_scores` of the faces found."""
    s = result.scores
    found = f"faces found in {result.images - result.missed} of {result.images} images ({result.missed} missed)"
    setup = f"detector={crops.detector}, min_face={crops.min_face}, align={crops.align}\n{found}"
    if result.missed == result.images:
        return f"{setup}: nothing to score"
    low = lowest_recall(s)
    return (
        f"{setup}; end-to-end accuracy (a miss counts as wrong) {result.end_to_end:.4f}\n"
        f"lowest recall {s.recall[low]:.3f} ({EMOTIONS[low]}); called neutral {called_neutral(s):.3f}\n"
        f"on the images with a face found:\n\n{format_scores(s)}"
    )


def format_scores(scores: Scores) -> str:
    """Accuracy, macro-F1, a per-class table and the confusion matrix as plain text."""
    width = max(len(e) for e in EMOTIONS) + 2
    lines = [
        f"accuracy  {scores.accuracy:.4f}",
        f"macro-F1  {scores.macro_f1:.4f}",
        "",
        f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for i, name in enumerate(EMOTIONS):
        lines.append(
            f"{name:<{width}}{scores.precision[i]:>10.3f}{scores.recall[i]:>10.3f}"
            f"{scores.f1[i]:>10.3f}{scores.support[i]:>9d}"
        )
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    short = [e[:4] for e in EMOTIONS]
    lines.append(" " * width + "".join(f"{s:>7}" for s in short))
    for i, name in enumerate(EMOTIONS):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>7d}" for v in scores.confusion[i]))
    return "\n".join(lines)


def format_vote_scores(scores: VoteScores) -> str:
    """The FER+ figures in one block, then the tables against the majority and on the agreed faces."""
    rows = [("FER+ majority", scores.majority), ("agreed faces", scores.agreed), ("FER-2013 labels", scores.fer2013)]
    lines = [f"{scores.faces} faces; cross-entropy against the votes {scores.cross_entropy:.4f} nats", ""]
    lines.append(f"{'against':<18}{'faces':>7}{'accuracy':>10}{'macro-F1':>10}  {'lowest recall':<22}called neutral")
    for title, s in rows:
        low = lowest_recall(s)
        lowest = f"{s.recall[low]:.3f} ({EMOTIONS[low]})"
        lines.append(f"{title:<18}{sum(s.support):>7d}{s.accuracy:>10.4f}{s.macro_f1:>10.4f}  {lowest:<22}"
                     f"{called_neutral(s):.3f}")  # fmt: skip
    lines.append("called neutral: the share of the faces whose label is not neutral that the model calls neutral")
    lines += ["", "against FER+'s majority:", format_scores(scores.majority)]
    lines += ["", "on the agreed faces (FER-2013 label = FER+ majority):", format_scores(scores.agreed)]
    lines += ["", "against FER-2013's labels:", format_scores(scores.fer2013)]
    return "\n".join(lines)


def called_neutral(scores: Scores) -> float:
    """The share of the faces whose label is not neutral that were predicted neutral: the
    retreat to neutral a model trained on a crowd's majority makes on expressions it doubts."""
    neutral = EMOTIONS.index("neutral")
    confusion = np.asarray(scores.confusion)
    others = np.arange(len(EMOTIONS)) != neutral
    expressive = confusion[others].sum()
    return float(confusion[others, neutral].sum() / expressive) if expressive else 0.0


def lowest_recall(scores: Scores) -> int:
    """The class of lowest recall among those the faces scored have."""
    return min((i for i, n in enumerate(scores.support) if n), key=scores.recall.__getitem__, default=0)


def format_vote_summary(summary: dict[str, dict[str, int]]) -> str:
    """:func:`fer.data.ferplus.vote_summary` as a table: how many faces each split keeps."""
    keys = ("faces", "kept", "majority", "joined", "agreed")
    lines = [f"{'split':<12}" + "".join(f"{k:>10}" for k in keys)]
    lines += [f"{split:<12}" + "".join(f"{row[k]:>10d}" for k in keys) for split, row in summary.items()]
    lines.append("kept: most votes on the 7 classes; majority: one class has more than half the votes; "
                 "joined: a confident FER-2013 label; agreed: FER-2013 label = FER+ majority")  # fmt: skip
    return "\n".join(lines)


def format_counts(counts: dict[str, list[int]]) -> str:
    """Per-split, per-class counts with shares and the largest/smallest class ratio."""
    width = max(len(e) for e in EMOTIONS) + 2
    lines = [f"{'split':<12}{'total':>8}" + "".join(f"{e:>{width}}" for e in EMOTIONS) + f"{'max/min':>10}"]
    for split, row in counts.items():
        total = sum(row)
        present = [c for c in row if c > 0]
        ratio = f"{max(present) / min(present):.1f}x" if present else "-"
        lines.append(f"{split:<12}{total:>8}" + "".join(f"{c:>{width}}" for c in row) + f"{ratio:>10}")
        shares = "".join(f"{c / total:>{width}.1%}" if total else f"{'-':>{width}}" for c in row)
        lines.append(f"{'':<12}{'':>8}{shares}")
    return "\n".join(lines)
