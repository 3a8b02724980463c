"""Faces of uncropped labelled photos, cut as `fer label` cuts them: detected, the largest face
aligned on its eyes and cropped to 48x48 grey. For scoring the whole path on photos
(:func:`fer.evaluate.evaluate_detected`) and for turning in-the-wild photos
(:mod:`fer.data.wild`, or image folders ``ROOT/<split>/<class>/``) into a training source
(:func:`write_crops`: a folder of crops in the FER-2013 layout, which `fer train` reads)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fer.labels import EMOTIONS, FACE_SIZE

#: The record a crops folder keeps of how it was made (beside its split folders).
RECORD = "crops.json"


@dataclass(frozen=True)
class CropConfig:
    """How faces are found and cut: `fer label`'s detector, smallest face and alignment."""

    detector: str
    min_face: int
    align: bool = True

    @classmethod
    def checked(cls, detector: str, min_face: int, align: bool = True) -> CropConfig:
        """A config whose values `fer label` accepts (its constraints, declared once there).

        Raises:
            FerError: ``--detector: unknown detector ...`` or ``--min-face: must be ...``.
        """
        from fer.validation import check
        from fer.video.faces import DETECTORS
        from fer.video.pipeline import LABEL_CONSTRAINTS

        DETECTORS.get(detector)
        check("min_face", min_face, *LABEL_CONSTRAINTS["min_face"])
        return cls(detector, min_face, align)


@dataclass
class Crops:
    """The faces found in labelled photos: ``faces`` ``(n, 48, 48)`` uint8 and their
    ``labels``, ``found`` (per photo, in the order given: whether a face was found) and the
    paths of the photos with a face."""

    faces: np.ndarray
    labels: np.ndarray
    found: np.ndarray
    paths: list[str]

    @property
    def missed(self) -> int:
        return int((~self.found).sum())


def crop(paths: list[str], labels: list[int], config: CropConfig,
         progress: Callable[[int], None] | None = None) -> Crops:  # fmt: skip
    """The largest face of each photo, cut as `fer label` cuts it (photos without one, or
    unreadable, are left out and counted in ``found``); ``progress`` is told each photo done."""
    import cv2

    from fer.video.align import crop_face
    from fer.video.faces import create_detector

    detect = create_detector(config.detector, min_face=config.min_face)
    faces, found = [], []
    for done, path in enumerate(paths, 1):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        dets = [d for d in detect(image) if d.size >= config.min_face] if image is not None else []
        found.append(bool(dets))
        if dets:
            faces.append(crop_face(image, max(dets, key=lambda d: d.w * d.h), align=config.align))
        if progress is not None:
            progress(done)
    mask = np.array(found, bool)
    return Crops(
        faces=np.stack(faces) if faces else np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8),
        labels=np.asarray(labels, np.int64)[mask] if len(labels) else np.zeros(0, np.int64),
        found=mask,
        paths=[p for p, f in zip(paths, found, strict=True) if f],
    )


def write_crops(source: str | Path, out: str | Path, splits: list[str], config: CropConfig,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:  # fmt: skip
    """Cut the faces of each split of ``source`` into ``out/<split>/<class>/<photo>.png`` (the
    layout `fer train --data` and `fer evaluate --data` read) and record in ``out/crops.json``, per
    split (beside what earlier calls recorded of others), its source, how it was cut, the photos,
    the faces found and faces per class (returned too). ``progress(split, done, total)``.

    Raises:
        FerError: a split folder of ``out`` that already holds files, or two photos of a split
            with one name (their crops would be one file).
    """
    from fer.data.sources import list_photos
    from fer.errors import FerError

    out = Path(out)
    listed = {split: list_photos(source, split) for split in splits}
    for split, (paths, labels) in listed.items():
        if (out / split).is_dir() and any((out / split).rglob("*.*")):
            raise FerError(f"--out: {out / split} already holds files; give an empty folder (or remove it)")
        twice = [name for name, n in Counter(zip(labels, (Path(p).stem for p in paths), strict=True)).items() if n > 1]
        if twice:
            raise FerError(f"{source} [{split}]: two photos of {EMOTIONS[twice[0][0]]} named {twice[0][1]}.*; "
                           "their crops would be one file")  # fmt: skip
    old = out / RECORD
    record = json.loads(old.read_text()) if old.is_file() else {"splits": {}}
    for split, (paths, labels) in listed.items():
        tell = (lambda done, split=split, n=len(paths): progress(split, done, n)) if progress else None
        crops = crop(paths, labels, config, tell)
        for name in EMOTIONS:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        for face, label, path in zip(crops.faces, crops.labels, crops.paths, strict=True):
            _write_png(out / split / EMOTIONS[label] / f"{Path(path).stem}.png", face)
        record["splits"][split] = {
            "source": str(source),
            "config": asdict(config),
            "photos": len(paths),
            "faces": len(crops.labels),
            "per_class": dict(zip(EMOTIONS, np.bincount(crops.labels, minlength=len(EMOTIONS)).tolist(), strict=True)),
        }
        (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")  # each split recorded as it is done
    return {split: record["splits"][split] for split in splits}


def _write_png(path: Path, face: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), face):
        from fer.errors import EnvironmentFault

        raise EnvironmentFault(f"cannot write {path}")
