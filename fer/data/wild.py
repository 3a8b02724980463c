"""In-the-wild faces: a checkout of ``muxspace/facial_expressions`` (Apache-2.0).

13,682 labelled web photos and film stills in colour (``images/``), mostly LFW's news photos (named
``Person_Name_0001.jpg``) and Indian film stills (``ActorName_12.jpg``), each with one
student's label in ``data/legend.csv`` (``user.id,image,emotion``; the emotion's case varies,
``contempt`` has no class here and is left out). The labels are noisy and mostly neutral or
happy, but the faces are what `fer label` meets: uncropped, unequalised, at every pose.

The faces are split once, by person, so nobody is on both sides: a quarter of the people
(by a hash of the name) form the ``check`` split, the rest ``train``. The images are not
faces yet: :mod:`fer.crop` detects, aligns and crops them as `fer label` does.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from fer.errors import FerError
from fer.labels import EMOTIONS

#: The splits, by person: ``check`` holds a quarter of the people (see :func:`split_of`).
SPLITS = ("train", "check")
#: The checkout's emotion names (lower-cased) -> fer's classes.
LABELS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprise",
    "neutral": "neutral",
}
LEGEND = Path("data") / "legend.csv"
_NUMBERED = re.compile(r"^(.*?)[_-]?\d+[a-z]?$")


def is_wild(root: str | Path) -> bool:
    """Whether ``root`` is a facial_expressions checkout (its legend and its images)."""
    return (Path(root) / LEGEND).is_file() and (Path(root) / "images").is_dir()


def person(image: str) -> str:
    """Who an image shows, from its name: ``George_W_Bush_0001.jpg`` -> ``George_W_Bush``,
    ``HrithikRoshan_12.jpg`` -> ``HrithikRoshan`` (the name without its number)."""
    stem = Path(image).stem
    match = _NUMBERED.match(stem)
    return match.group(1) if match and match.group(1) else stem


def split_of(name: str) -> str:
    """The split of a person: ``check`` for a quarter of names (a stable hash), else ``train``.
    The name is hashed as written: the checkout spells one person two ways (``Hrithik_Roshan``,
    ``HrithikRoshan``), both of which fall in ``train``."""
    return "check" if hashlib.sha1(name.encode()).digest()[0] % 4 == 0 else "train"


def check_split(split: str) -> None:
    """A split of a checkout: one of :data:`SPLITS`.

    Raises:
        FerError: another split.
    """
    if split not in SPLITS:
        raise FerError(f"--split: must be one of {', '.join(SPLITS)} for a facial_expressions checkout; got {split!r}")


def list_split(root: str | Path, split: str) -> tuple[list[str], list[int]]:
    """The image paths of ``split`` and their labels (indices into :data:`fer.labels.EMOTIONS`),
    sorted by path; rows without a fer class (contempt), without their image, or whose image is
    listed twice with different classes are left out.

    Raises:
        FerError: an unknown split, or a root that is not a facial_expressions checkout.
    """
    check_split(split)
    if not is_wild(root):
        raise FerError(f"{root}: not a facial_expressions checkout (no {LEGEND} and images/)")
    images = Path(root) / "images"
    rows: dict[str, set[int]] = {}
    with open(Path(root) / LEGEND, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            emotion = LABELS.get((row.get("emotion") or "").strip().lower())
            name = (row.get("image") or "").strip()
            if emotion is None or split_of(person(name)) != split or not (images / name).is_file():
                continue
            rows.setdefault(str(images / name), set()).add(EMOTIONS.index(emotion))
    paths = sorted(p for p, labels in rows.items() if len(labels) == 1)  # two labels for one photo: neither
    return paths, [rows[p].pop() for p in paths]
