"""Evaluate a model bundle on a labelled split, and format the figures for people."""

from __future__ import annotations

from pathlib import Path

from fer.data import fer2013
from fer.labels import EMOTIONS
from fer.metrics import Scores, score


def evaluate(model, data: str | Path, split: str, *, tta: str = "none", limit_per_class: int | None = None) -> Scores:
    """Score ``model`` (an :class:`fer.model.EmotionModel`) on one split of a dataset."""
    faces = fer2013.read_split(data, split, limit_per_class=limit_per_class)
    images, labels = faces.to_numpy()
    return score(labels, model.predict(images, tta=tta))


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
