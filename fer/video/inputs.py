"""Turn the user's INPUT arguments into a list of videos (and still images) with stable, safe ids.

A still image is labelled as a one-frame video, so photo collections and datasets of
uncropped faces go through the same detect, align and classify path.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fer.errors import FerError
from fer.image import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp",
    ".m2ts", ".vob", ".gif",  # a GIF, animated or not, is read as a video (FFmpeg gives its frames and times)
)  # fmt: skip
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
LIST_EXTENSIONS = (".txt", ".lst", ".list")


def is_image(path: str | Path) -> bool:
    """Whether ``path`` names an image file (by its extension; an animated WebP is read as a
    video: :func:`fer.video.decode.is_still`)."""
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
    """One video to label: its path as given, the id its outputs are named by, and the
    fingerprint of its content (what "the same video" means: a moved or renamed file is)."""

    path: str
    video_id: str
    content: str = ""


#: Bytes read at the start, the middle and the end of a file for its fingerprint: enough to
#: tell videos apart (containers put per-file tables at one end), cheap on a network mount.
SAMPLE_BYTES = 1 << 16


def content_id(path: str | Path) -> str:
    """A fingerprint of a file's content: a hash of its size and three samples of its bytes.

    Read in milliseconds whatever the file's size; a copy, a move or a rename keeps it, any
    re-encode or edit changes it. A file that cannot be read gets a hash of its path (its
    labelling then fails with the reason).
    """
    h = hashlib.sha256()
    try:
        size = os.path.getsize(path)
        h.update(str(size).encode())
        with open(path, "rb") as f:
            for at in (0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)):
                f.seek(at)
                h.update(f.read(SAMPLE_BYTES))
    except OSError:
        h.update(b"unreadable:" + str(Path(path).resolve()).encode())
    return h.hexdigest()[:16]


def video_id(path: str | Path, content: str | None = None) -> str:
    """A file-name-safe id: the ASCII-folded stem plus the content fingerprint, so two
    ``clip.mp4`` with different content never collide and a moved file keeps its id."""
    stem = unicodedata.normalize("NFKD", Path(path).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "video"
    return f"{stem}-{(content or content_id(path))[:10]}"


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
            content = content_id(f)
            videos.append(VideoInput(str(f), video_id(f, content), content))
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
