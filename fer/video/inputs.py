"""Turn the user's INPUT arguments into a list of videos (and still images) with stable, safe ids.

A still image is labelled as a one-frame video, so photo collections and datasets of
uncropped faces go through the same detect, align and classify path.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fer.errors import FerError

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp",
)  # fmt: skip
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
LIST_EXTENSIONS = (".txt", ".lst", ".list")


def is_image(path: str | Path) -> bool:
    """Whether ``path`` names a still image (by its extension)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _media_in(folder: Path) -> list[Path]:
    """Videos and images under ``folder``, sorted; hidden files and folders (``.Trashes``,
    macOS ``._clip.mp4`` resource forks) are not media."""
    return sorted(
        f
        for f in folder.rglob("*")
        if f.suffix.lower() in MEDIA_EXTENSIONS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
        and f.is_file()
    )


@dataclass(frozen=True)
class VideoInput:
    """One video to label: its path as given and the id its outputs are named by."""

    path: str
    video_id: str


def video_id(path: str | Path) -> str:
    """A file-name-safe id: the ASCII-folded stem plus a hash of the absolute path, so
    two ``clip.mp4`` in different folders never collide."""
    resolved = str(Path(path).resolve())
    stem = unicodedata.normalize("NFKD", Path(path).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "video"
    return f"{stem}-{hashlib.sha1(resolved.encode()).hexdigest()[:10]}"


def resolve_inputs(inputs: list[str] | tuple[str, ...]) -> list[VideoInput]:
    """Expand files, folders (searched recursively by video and image extension) and list files
    (one path per line, ``#`` comments; relative paths are relative to the list).

    Other files are kept: if they are not videos, labelling records them as failed.

    Raises:
        FerError: a path does not exist, or nothing to label was found.
    """
    found: list[Path] = []
    for arg in inputs:
        p = Path(arg)
        if not p.exists():
            raise FerError(f"no such file or folder: {arg}")
        if p.is_dir():
            found += _media_in(p)
        elif p.suffix.lower() in LIST_EXTENSIONS:
            found += _read_list(p)
        else:
            found.append(p)
    seen: set[str] = set()
    videos = []
    for f in found:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            videos.append(VideoInput(str(f), video_id(f)))
    if not videos:
        raise FerError(f"no videos or images found in {', '.join(inputs)} (extensions: {' '.join(MEDIA_EXTENSIONS)})")
    return videos


def _read_list(path: Path) -> list[Path]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line) if Path(line).is_absolute() else path.parent / line
        if not p.exists():
            raise FerError(f"{path} line {n}: no such file or folder: {line}")
        out += _media_in(p) if p.is_dir() else [p]
    return out
