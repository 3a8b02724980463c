"""The labelling manifest: one small JSON file per video in ``OUT/manifest/<video_id>.json``.

One file per video, each replaced atomically, works the same on local disks, shared
mounts and object stores (which cannot append), never leaves a torn record after a crash,
and lets jobs labelling different videos into the same output never contend.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from fer import console
from fer.storage import Location, read_many

MANIFEST_DIR = "manifest"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
#: Labelled, but the file holds fewer frames than its container states (truncated or corrupt):
#: the timeline covers what could be decoded, the reason says how much.
PARTIAL = "partial"
#: What a re-run with the same input, model and settings does not redo.
LABELLED = (DONE, PARTIAL)
#: Only in a stopped run's summary, never in the manifest: the video was not finished.
INTERRUPTED = "interrupted"
STATUSES = (DONE, PARTIAL, SKIPPED, FAILED, INTERRUPTED)


@dataclass(frozen=True)
class Entry:
    """What happened to one video: ``frames`` sampled frames and ``faces`` face rows over
    ``seconds`` of video. ``key`` identifies the input's content, the model and the labelling
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
    #: The input's content fingerprint (:func:`fer.video.inputs.content_id`): a moved or
    #: renamed file is found done by it.
    content: str = ""


def load(out: Location | str) -> dict[str, Entry]:
    """Every video's entry in the manifest of output ``out`` ({} when there is none)."""
    out = out if isinstance(out, Location) else Location.parse(out)
    entries: dict[str, Entry] = {}
    files = (out / MANIFEST_DIR).files(".json")
    for where, blob in zip(files, read_many(files), strict=True):
        if blob is None:
            continue  # removed meanwhile (a concurrent check --repair): the video counts as not done
        try:
            entry = Entry(**json.loads(blob))
        except (TypeError, ValueError) as exc:
            console.warn(f"{where}: not a readable manifest entry ({exc}); its video counts as not labelled")
            continue
        entries[entry.video_id] = entry
    return entries


def record(out: Location, entry: Entry) -> bytes:
    """Write (or replace) the entry of ``entry.video_id``, atomically; returns the bytes written."""
    data = json.dumps(asdict(entry), indent=1).encode()
    (out / MANIFEST_DIR / f"{entry.video_id}.json").write_bytes(data)
    return data


def remove(out: Location, video_id: str) -> None:
    """Drop a video's entry (its outputs are gone or superseded)."""
    (out / MANIFEST_DIR / f"{video_id}.json").delete()


def labelled(out: Location | str) -> set[str] | None:
    """The ids of the videos whose timelines count (entries ``done`` or ``partial``), or None
    when ``out`` has no manifest (timelines written or copied without one all count)."""
    out = out if isinstance(out, Location) else Location.parse(out)
    if not (out / MANIFEST_DIR).is_dir():
        return None
    return {vid for vid, e in load(out).items() if e.status in LABELLED}
