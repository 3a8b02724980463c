"""The labelling manifest: one JSON line per finished video in ``DIR/manifest.jsonl``.

Appending keeps it crash-safe (a torn last line is ignored) and cheap for archives of
thousands of videos; the newest line for a video wins.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MANIFEST_FILE = "manifest.jsonl"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass(frozen=True)
class Entry:
    """What happened to one video: ``frames`` sampled frames and ``faces`` face rows over
    ``seconds`` of video. ``key`` identifies the input file, the model and the labelling
    settings: a video is skipped on a re-run only when its key is unchanged."""

    video_id: str
    path: str
    status: str
    reason: str = ""
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    model_id: str = ""
    key: str = ""
    output: str = ""


def load(out_dir: str | Path) -> dict[str, Entry]:
    """The newest entry of every video in the manifest ({} when there is none)."""
    path = Path(out_dir) / MANIFEST_FILE
    entries: dict[str, Entry] = {}
    if not path.is_file():
        return entries
    for line in path.read_text().splitlines():
        try:
            entry = Entry(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue  # a line torn by a crash
        entries[entry.video_id] = entry
    return entries


def append(out_dir: str | Path, entry: Entry) -> None:
    """Add an entry durably (flushed and synced before returning)."""
    path = Path(out_dir) / MANIFEST_FILE
    with open(path, "a") as f:
        f.write(json.dumps(asdict(entry)) + "\n")
        f.flush()
        os.fsync(f.fileno())
