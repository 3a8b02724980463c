"""FER+ (Barsoum et al. 2016): ten crowd votes for every FER-2013 face, on the original pixels.

The layout is the one FER+'s own ``generate_training_data.py`` writes::

    ROOT/fer2013new.csv            Usage, Image name, neutral, happiness, ..., contempt, unknown, NF
    ROOT/FER2013Train/*.png        the Training split (fer's ``train``)
    ROOT/FER2013Valid/*.png        the PublicTest split (fer's ``val``)
    ROOT/FER2013Test/*.png         the PrivateTest split (``test``), where it is present
    ROOT/fer2013_join.csv          optional: each PNG's FER-2013 class (``fer2013_class``, ``confident``)

How votes become targets (decided once, here):

- **Outliers**: a class with a single vote gets none, as in the paper's code (one annotator of
  ten is noise, not a share).
- **Contempt, unknown and not-a-face** are not among fer's seven classes: their votes are
  dropped. A face keeps its place only while more than half of its (remaining) votes fall on
  the seven classes; the rest (mostly ``unknown``/``NF``, or contempt) are left out.
- ``majority`` (the FER+ label everyone reports against): the class with more than half of
  the votes; a face without one has no majority (``-1``).
- Targets of ``fer train --targets``: ``votes`` the face's vote distribution over the seven
  classes (the paper's "probability" mode); ``majority`` its one-hot majority (faces
  without one left out); ``fer2013`` FER-2013's own label on these pixels, where the join is
  confident (and FER+ keeps the face); ``mix:W`` the votes with share W and FER-2013's
  one-hot label with 1 - W where the join is confident, the votes alone elsewhere; ``both``
  is ``mix:0.5``.

Every split read carries, beside ``image``, ``label`` (the target's arg-max: what balancing
counts and validation scores) and ``target``, the columns evaluation reports on: ``votes``
(the distribution), ``majority`` and ``fer2013`` (``-1`` where unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer.data.fer2013 import FaceSplit, decode_split
from fer.errors import FerError
from fer.labels import EMOTIONS, NUM_CLASSES, label_index

VOTES_FILE = "fer2013new.csv"
JOIN_FILE = "fer2013_join.csv"
#: FER+'s vote columns, in its order, and the fer class each emotion maps to.
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
TO_FER = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
          "disgust": "disgust", "fear": "fear"}  # fmt: skip
#: fer's split names and FER+'s folder and ``Usage`` for each.
SPLITS = {
    "train": ("FER2013Train", "Training"),
    "val": ("FER2013Valid", "PublicTest"),
    "test": ("FER2013Test", "PrivateTest"),
}
TARGETS = ("votes", "majority", "fer2013", "both")
#: ``mix:W``: the votes' share W of a target mixed with FER-2013's label (``both`` is ``mix:0.5``).
MIX = "mix:"
NO_LABEL = -1


def mix_share(mode: str) -> float | None:
    """The votes' share of a ``mix:W`` (``both``: 0.5) target; None for the other modes and
    for a ``mix:`` whose W is not a number in [0, 1]."""
    if mode == "both":
        return 0.5
    if not mode.startswith(MIX):
        return None
    try:
        share = float(mode[len(MIX) :])
    except ValueError:
        return None
    return share if 0.0 <= share <= 1.0 else None


@dataclass(frozen=True)
class TargetModes:
    """The constraint on ``--targets``: one of :data:`TARGETS`, or ``mix:W`` (:func:`mix_share`)."""

    def accepts(self, value) -> bool:
        return isinstance(value, str) and (value in TARGETS or mix_share(value) is not None)

    def __str__(self) -> str:
        return f"one of {', '.join(TARGETS)}, or mix:W with W in [0, 1] (the votes' share)"


TARGET_MODES = TargetModes()


def is_ferplus(source: str | Path) -> bool:
    """Whether ``source`` is a FER+ root (a folder holding ``fer2013new.csv``)."""
    return (Path(source) / VOTES_FILE).is_file()


def _split(name: str) -> tuple[str, str]:
    """(folder, Usage) of a split named as fer does (``train``) or as FER+ does (``FER2013Train``)."""
    for key, (folder, usage) in SPLITS.items():
        if name.strip().lower() in (key, folder.lower(), usage.lower()):
            return folder, usage
    names = ", ".join(f"{k} ({f})" for k, (f, _) in SPLITS.items())
    raise FerError(f"unknown FER+ split {name!r}: use one of {names}")


def read_votes(root: str | Path) -> pd.DataFrame:
    """The vote table of a FER+ root, one row per named face, with the derived columns
    ``split`` (the folder), ``votes`` (an ``(n, 7)`` distribution, zeros when the face is left
    out), ``kept``, ``majority`` and ``fer2013`` (from the join file; ``-1`` where absent or
    not confident)."""
    path = Path(root) / VOTES_FILE
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FerError(f"{path}: not a FER+ vote file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in df.columns]
    if missing:
        raise FerError(f"{path}: missing column(s) {', '.join(missing)}")
    df = df[df["Image name"].notna()].reset_index(drop=True)  # faces FER+ dropped as not faces
    usage_to_folder = {usage: folder for folder, usage in SPLITS.values()}
    df["split"] = df["Usage"].str.strip().map(usage_to_folder)
    votes, kept, majority = vote_targets(df[list(VOTE_COLUMNS)].to_numpy(np.float64))
    df["kept"], df["majority"] = kept, majority
    df["fer2013"] = _joined_labels(Path(root), df)
    df["votes"] = list(votes)
    return df


def vote_targets(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From raw vote counts ``(n, 10)`` in :data:`VOTE_COLUMNS` order: the distribution over
    fer's seven classes ``(n, 7)``, whether each face is kept, and its majority class (``-1``:
    none). See the module's docstring for the rules."""
    raw = np.where(raw <= 1, 0.0, raw)  # single votes are outliers
    ours = np.zeros((len(raw), NUM_CLASSES))
    for j, name in enumerate(VOTE_COLUMNS):
        if name in TO_FER:
            ours[:, label_index(TO_FER[name])] = raw[:, j]
    total, on_ours = raw.sum(axis=1), ours.sum(axis=1)
    kept = on_ours > 0.5 * total
    votes = np.divide(ours, on_ours[:, None], out=np.zeros_like(ours), where=kept[:, None])
    top = ours.argmax(axis=1)
    majority = np.where(kept & (ours.max(axis=1) > 0.5 * total), top, NO_LABEL)
    return votes.astype(np.float32), kept, majority.astype(np.int64)


def _joined_labels(root: Path, df: pd.DataFrame) -> np.ndarray:
    """FER-2013's class of each face where the join file pairs it confidently, else ``-1``."""
    path = root / JOIN_FILE
    if not path.is_file():
        return np.full(len(df), NO_LABEL, np.int64)
    join = pd.read_csv(path)
    join = join[join["confident"] == 1]
    classes = dict(zip(zip(join["ferplus_split"], join["ferplus_png"], strict=True),
                       join["fer2013_class"].map(label_index), strict=True))  # fmt: skip
    keys = zip(df["split"], df["Image name"], strict=True)
    return np.array([classes.get(k, NO_LABEL) for k in keys], np.int64)


def targets(df: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The training targets ``(n, 7)`` of the rows of :func:`read_votes` under ``mode`` (one of
    :data:`TARGETS`) and which rows have one."""
    votes = np.stack(df["votes"].to_numpy()) if len(df) else np.zeros((0, NUM_CLASSES), np.float32)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)
    fer2013, majority, kept = df["fer2013"].to_numpy(), df["majority"].to_numpy(), df["kept"].to_numpy()
    if mode == "votes":
        return votes, kept
    if mode == "majority":
        return onehot[np.maximum(majority, 0)], majority != NO_LABEL
    joined = kept & (fer2013 != NO_LABEL)
    if mode == "fer2013":
        return onehot[np.maximum(fer2013, 0)], joined
    share = mix_share(mode)
    if share is not None:
        mixed = np.where(joined[:, None], share * votes + (1 - share) * onehot[np.maximum(fer2013, 0)], votes)
        return mixed.astype(np.float32), kept
    raise FerError(f"--targets: must be {TARGET_MODES}; got {mode!r}")


def read_split(
    root: str | Path, split: str, *, targets_mode: str = "votes", limit_per_class: int | None = None,
    max_unreadable: float = 0.01,
) -> FaceSplit:  # fmt: skip
    """Read one split of a FER+ root with the targets ``targets_mode`` (see the module).

    Raises:
        FerError: an unknown split, a missing split folder, a broken vote file, no faces left.
    """
    import pyarrow as pa
    from ray.data.extensions import ArrowTensorArray

    folder, _ = _split(split)
    where = Path(root) / folder
    if not where.is_dir():
        raise FerError(f"no split folder {where}")
    df = read_votes(root)
    rows = df[df["split"] == folder]
    target, has = targets(rows, targets_mode)
    rows, target = rows[has], target[has]
    votes = np.stack(rows["votes"].to_numpy()) if len(rows) else np.zeros((0, NUM_CLASSES), np.float32)
    labels = target.argmax(axis=1) if len(target) else np.zeros(0, np.int64)
    if limit_per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == c)[:limit_per_class] for c in range(NUM_CLASSES)])
        keep.sort()
        rows, target, votes, labels = rows.iloc[keep], target[keep], votes[keep], labels[keep]
    if not len(rows):
        raise FerError(f"{where}: no face has a target under --targets {targets_mode}")
    items = pa.table({
        "path": [str(where / name) for name in rows["Image name"]],
        "label": pa.array(labels, pa.int64()),
        "target": ArrowTensorArray.from_numpy(target.astype(np.float32)),
        "votes": ArrowTensorArray.from_numpy(votes.astype(np.float32)),
        "majority": pa.array(rows["majority"].to_numpy(), pa.int64()),
        "fer2013": pa.array(rows["fer2013"].to_numpy(), pa.int64()),
    })  # fmt: skip
    return decode_split(items, f"{where} (targets {targets_mode})", max_unreadable=max_unreadable)


def split_counts(root: str | Path, targets_mode: str = "votes") -> dict[str, list[int]]:
    """Faces per class (the target's arg-max) of every split in the vote file, without decoding."""
    df = read_votes(root)
    out = {}
    for key, (folder, _) in SPLITS.items():
        rows = df[df["split"] == folder]
        if len(rows):
            target, has = targets(rows, targets_mode)
            out[key] = np.bincount(target[has].argmax(axis=1), minlength=NUM_CLASSES).tolist()
    return out


def vote_summary(root: str | Path) -> dict[str, dict[str, int]]:
    """Per split: faces named, kept (most votes on the seven classes), with a majority, with a
    confident FER-2013 join, and agreed (FER-2013 label = FER+ majority)."""
    df = read_votes(root)
    out = {}
    for key, (folder, _) in SPLITS.items():
        rows = df[df["split"] == folder]
        if len(rows):
            maj, joined = rows["majority"].to_numpy(), rows["fer2013"].to_numpy()
            out[key] = {
                "faces": len(rows), "kept": int(rows["kept"].sum()), "majority": int((maj >= 0).sum()),
                "joined": int((joined >= 0).sum()), "agreed": int(((maj >= 0) & (maj == joined)).sum()),
            }  # fmt: skip
    return out


__all__ = ["EMOTIONS", "TARGETS", "is_ferplus", "read_split", "read_votes", "split_counts", "vote_targets"]
