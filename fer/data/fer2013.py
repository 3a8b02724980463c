"""Readers for FER-2013 in both forms people hold it: the Kaggle CSV and image folders.

Both produce a :class:`FaceSplit`: a materialised Ray Dataset with an ``image`` column of
48x48 uint8 grey faces and a ``label`` column of integer labels in
:data:`fer.labels.EMOTIONS` order, plus counts of what had to be converted or skipped.

- CSV: ``emotion,pixels,Usage`` with 2,304 space-separated grey values per row; a split is
  a ``Usage`` value (``Training``, ``PublicTest``, ``PrivateTest``; ``train``/``val``/``test``
  are accepted as aliases).
- Folders: ``ROOT/<split>/<class>/`` images (:data:`fer.image.IMAGE_EXTENSIONS`) with
  case-insensitive class names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fer.errors import FerError
from fer.image import IMAGE_EXTENSIONS, to_face
from fer.labels import EMOTIONS, FACE_SIZE, NUM_CLASSES, label_index

CSV_COLUMNS = ("emotion", "pixels", "Usage")
CSV_SPLITS = {"training": "Training", "publictest": "PublicTest", "privatetest": "PrivateTest"}
CSV_SPLIT_ALIASES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}

# Status codes of a decoded image.
OK, CONVERTED, UNREADABLE = 0, 1, 2


def to_columns(faces) -> dict[str, np.ndarray]:
    """Every column of a dataset of faces (a Ray dataset, or a training worker's shard of
    one), in its order: at least ``image`` ``(n, 48, 48)`` uint8 and ``label`` ``(n,)`` int64."""
    batches = list(faces.iter_batches(batch_size=4096, batch_format="numpy"))
    if not batches:
        return {"image": np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), "label": np.zeros((0,), np.int64)}
    columns = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    columns["label"] = columns["label"].astype(np.int64)
    return columns


def to_arrays(faces) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 48, 48)`` uint8 and labels ``(n,)`` int64 of a dataset of faces, in its order."""
    columns = to_columns(faces)
    return columns["image"], columns["label"]


def targets_of(columns: dict[str, np.ndarray]) -> np.ndarray:
    """The training targets ``(n, 7)`` float32 of faces read by :func:`to_columns`: their
    ``target`` column where the dataset has one (FER+'s votes), else one-hot labels."""
    if "target" in columns:
        return columns["target"].astype(np.float32)
    return np.eye(NUM_CLASSES, dtype=np.float32)[columns["label"]]


@dataclass
class FaceSplit:
    """One split of a labelled face dataset, read and validated.

    Attributes:
        dataset: materialised Ray Dataset with columns ``image`` (48x48 uint8) and
            ``label`` (int64), unreadable images already removed.
        source: where the split was read from (a folder or ``file.csv:Usage``).
        counts: images per class, in :data:`fer.labels.EMOTIONS` order.
        converted: images that were colour or another size and were converted.
        unreadable: paths (or CSV rows) that could not be decoded and were skipped.
        fingerprint: order-independent SHA-256 of the images and labels.
    """

    dataset: object  # ray.data.Dataset; typed loosely so importing fer.data stays light
    source: str
    counts: list[int]
    converted: int = 0
    unreadable: list[str] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def size(self) -> int:
        return int(sum(self.counts))

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """All images ``(n, 48, 48)`` uint8 and labels ``(n,)`` int64, in dataset order."""
        return to_arrays(self.dataset)

    def joined(self, other: FaceSplit, weight: float) -> FaceSplit:
        """These faces and ``other``'s in one split with columns ``image``, ``label``, ``target``
        (see :func:`targets_of`) and ``weight`` (1 for these faces, ``weight`` for the other's: a
        second source's share of the loss, face for face)."""

        def columns(faces: FaceSplit, w: float):
            def batch(b: dict) -> dict:
                return {"image": b["image"], "label": b["label"], "target": targets_of(b),
                        "weight": np.full(len(b["label"]), w, np.float32)}  # fmt: skip

            return faces.dataset.map_batches(batch, batch_format="numpy")

        return FaceSplit(
            dataset=columns(self, 1.0).union(columns(other, weight)).materialize(),
            source=f"{self.source} + {other.source} (weight {weight:g})",
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
            converted=self.converted + other.converted,
            unreadable=self.unreadable + other.unreadable,
            fingerprint=hashlib.sha256(f"{self.fingerprint}+{other.fingerprint}:{weight!r}".encode()).hexdigest(),
        )

    def describe(self) -> str:
        """A one-line summary for logs."""
        parts = [f"{self.size} images from {self.source}"]
        if self.converted:
            parts.append(f"{self.converted} converted to 48x48 grey")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable skipped (first: {self.unreadable[0]})")
        return ", ".join(parts)


# --------------------------------------------------------------------------- listing


def is_csv(source: str | Path) -> bool:
    return Path(source).suffix.lower() == ".csv"


def list_folder_split(root: str | Path, split: str) -> tuple[list[str], list[int]]:
    """List the image files of ``ROOT/<split>`` and their labels, sorted by path.

    Raises:
        FerError: the split folder is missing, holds an unknown class folder, or no images.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        hint = f" (splits found: {', '.join(have)})" if have else ""
        raise FerError(f"no split folder {split_dir}{hint}")
    paths: list[str] = []
    labels: list[int] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        try:
            label = label_index(class_dir.name)
        except KeyError:
            raise FerError(f"unknown class folder {class_dir}: expected one of {', '.join(EMOTIONS)}") from None
        files = sorted(str(f) for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FerError(f"split {split_dir} holds no images ({'/'.join(IMAGE_EXTENSIONS)} in class folders)")
    return paths, labels


def _read_csv(path: str | Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"emotion": "string", "pixels": "string", "Usage": "string"})
    except FileNotFoundError:
        raise FerError(f"no such file: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FerError(f"{path}: not a FER-2013 CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise FerError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
    return df


def _csv_usage(split: str) -> str:
    key = split.strip().lower()
    usage = CSV_SPLITS.get(key) or CSV_SPLIT_ALIASES.get(key)
    if usage is None:
        raise FerError(
            f"unknown CSV split {split!r}: use one of Training, PublicTest, PrivateTest (or train, val, test)"
        )
    return usage


def _csv_rows(path: str | Path, split: str) -> pd.DataFrame:
    df = _read_csv(path)
    usage = _csv_usage(split)
    rows = df[df["Usage"].str.strip() == usage]
    if rows.empty:
        raise FerError(f"{path}: split {usage} is empty")
    return rows


def _csv_labels(path: str | Path, rows: pd.DataFrame) -> np.ndarray:
    labels = pd.to_numeric(rows["emotion"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise FerError(
            f"{path} row {_csv_row_number(rows, i)}: emotion {rows['emotion'].iloc[i]!r} "
            f"is not an integer 0..{NUM_CLASSES - 1}"
        )
    return labels.to_numpy(np.int64)


def _csv_row_number(rows: pd.DataFrame, i: int) -> int:
    # +2: the header is line 1 and the index counts data rows from 0.
    return int(rows.index[i]) + 2


def split_counts(source: str | Path) -> dict[str, list[int]]:
    """Images per class of every split found, without decoding any image.

    Returns a mapping ``split -> counts`` in :data:`fer.labels.EMOTIONS` order.
    """
    if is_csv(source):
        df = _read_csv(source)
        out: dict[str, list[int]] = {}
        for usage in sorted(df["Usage"].dropna().str.strip().unique()):
            rows = df[df["Usage"].str.strip() == usage]
            labels = _csv_labels(source, rows)
            out[usage] = np.bincount(labels, minlength=NUM_CLASSES).tolist()
        if not out:
            raise FerError(f"{source}: no rows")
        return out
    root = Path(source)
    if not root.is_dir():
        raise FerError(f"no such dataset folder: {root}")
    splits = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not splits:
        raise FerError(f"{root} holds no split folders (expected ROOT/<split>/<class>/*.jpg)")
    out = {}
    for split in splits:
        _, labels = list_folder_split(root, split)
        out[split] = np.bincount(labels, minlength=NUM_CLASSES).tolist()
    return out


# --------------------------------------------------------------------------- decoding


def _decode_paths(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data map_batches function: decode image files into faces with a status."""
    import cv2

    n = len(batch["path"])
    images = np.zeros((n, FACE_SIZE, FACE_SIZE), np.uint8)
    status = np.zeros(n, np.int8)
    for i, path in enumerate(batch["path"]):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.size == 0:
            status[i] = UNREADABLE
            continue
        images[i], converted = to_face(raw)
        status[i] = CONVERTED if converted else OK
    # Other columns (a FER+ face's votes, say) pass through unchanged.
    return {
        **batch,
        "image": images,
        "label": batch["label"].astype(np.int64),
        "status": status,
        "digest": _digests(images, batch["label"]),
    }


def _digests(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array(
        [hashlib.sha1(img.tobytes() + bytes([int(lab)])).digest() for img, lab in zip(images, labels, strict=True)],
        dtype=object,
    )


def _fingerprint(digests: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for d in sorted(digests):
        h.update(d)
    return h.hexdigest()


def read_split(
    source: str | Path,
    split: str,
    *,
    max_unreadable: float = 0.01,
    limit_per_class: int | None = None,
) -> FaceSplit:
    """Read one split of FER-2013 from a CSV file or an image-folder root.

    Args:
        source: a ``.csv`` file or a folder holding ``<split>/<class>/`` folders.
        split: a split folder name, or a CSV ``Usage`` value (aliases train/val/test).
        max_unreadable: fail if more than this fraction of images cannot be decoded.
        limit_per_class: keep at most this many images per class (the first ones in
            path or row order): for quick experiments and tests.

    Raises:
        FerError: for a missing source, an unknown class folder or CSV split, a CSV row
            with the wrong number of pixels, an empty split, or too many unreadable images.
    """
    import pyarrow as pa

    if is_csv(source):
        return _read_csv_split(source, split, limit_per_class)
    paths, labels = list_folder_split(source, split)
    if limit_per_class is not None:
        paths, labels = take_per_class(paths, labels, limit_per_class)
    items = pa.table({"path": paths, "label": pa.array(labels, pa.int64())})
    return decode_split(items, str(Path(source) / split), max_unreadable=max_unreadable)


def decode_split(items, where: str, *, max_unreadable: float = 0.01) -> FaceSplit:
    """Decode the image files of ``items`` (a pyarrow table with ``path``, ``label`` and any
    other columns, which the faces keep) into a :class:`FaceSplit` read from ``where``.

    Raises:
        FerError: more than ``max_unreadable`` of the images cannot be decoded.
    """
    import ray.data
    from ray.data.expressions import col

    n = items.num_rows
    # A few hundred files per block: enough blocks for every CPU to decode in parallel.
    step = max(500, -(-n // 64))
    blocks = [items.slice(i, step) for i in range(0, n, step)]
    ds = ray.data.from_arrow(blocks).map_batches(_decode_paths, batch_format="numpy", batch_size=step)
    ds = ds.materialize()
    meta = ds.select_columns(["status", "path", "digest"]).to_pandas()
    bad = meta[meta["status"] == UNREADABLE]["path"].tolist()
    if len(bad) > max_unreadable * len(meta):
        raise FerError(
            f"{len(bad)} of {len(meta)} images in {where} could not be read "
            f"(more than {max_unreadable:.0%}; first: {bad[0]})"
        )
    good = meta["status"] != UNREADABLE
    ds = ds.filter(expr=col("status") != UNREADABLE) if bad else ds
    ds = ds.select_columns(["image", *(c for c in items.column_names if c != "path")]).materialize()
    kept_labels = items["label"].to_numpy()[good.to_numpy()]
    return FaceSplit(
        dataset=ds,
        source=where,
        counts=np.bincount(kept_labels, minlength=NUM_CLASSES).tolist(),
        converted=int((meta["status"] == CONVERTED).sum()),
        unreadable=bad,
        fingerprint=_fingerprint(meta["digest"][good]),
    )


def take_per_class(paths: list[str], labels: list[int], per_class: int) -> tuple[list[str], list[int]]:
    seen = [0] * NUM_CLASSES
    out_p, out_l = [], []
    for p, lab in zip(paths, labels, strict=True):
        if seen[lab] < per_class:
            seen[lab] += 1
            out_p.append(p)
            out_l.append(lab)
    return out_p, out_l


def _read_csv_split(path: str | Path, split: str, limit_per_class: int | None) -> FaceSplit:
    import pyarrow as pa
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    rows = _csv_rows(path, split)
    labels = _csv_labels(path, rows)
    n = len(rows)
    images = np.zeros((n, FACE_SIZE * FACE_SIZE), np.uint8)
    expected = FACE_SIZE * FACE_SIZE
    for i, text in enumerate(rows["pixels"].fillna("")):
        values = text.split()
        if len(values) != expected:
            raise FerError(
                f"{path} row {_csv_row_number(rows, i)}: expected {expected} pixel values, found {len(values)}"
            )
        try:
            pixels = np.array(values, dtype=np.int64)
        except ValueError:
            raise FerError(f"{path} row {_csv_row_number(rows, i)}: pixel values must be integers") from None
        if pixels.min() < 0 or pixels.max() > 255:
            raise FerError(f"{path} row {_csv_row_number(rows, i)}: pixel values must be in 0..255")
        images[i] = pixels
    images = images.reshape(n, FACE_SIZE, FACE_SIZE)
    if limit_per_class is not None:
        keep = np.zeros(n, bool)
        for c in range(NUM_CLASSES):
            keep[np.flatnonzero(labels == c)[:limit_per_class]] = True
        images, labels = images[keep], labels[keep]
    table = pa.table({"image": ArrowTensorArray.from_numpy(images), "label": pa.array(labels, pa.int64())})
    return FaceSplit(
        dataset=ray.data.from_arrow(table).materialize(),
        source=f"{path}:{_csv_usage(split)}",
        counts=np.bincount(labels, minlength=NUM_CLASSES).tolist(),
        fingerprint=_fingerprint(_digests(images, labels)),
    )
