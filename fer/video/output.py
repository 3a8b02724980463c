"""Writing a labelled video: its rows become a timeline (face ids, shots, persons), its aggregates,
its persons and its manifest entry, in that order; the entry last, since it is what says the
video is done. The archive index (:mod:`fer.index`) gets its rows after."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from fer import aggregates
from fer.errors import EnvironmentFault
from fer.index import IndexWriter
from fer.labels import EMOTIONS
from fer.schema import (
    LANDMARK_COLUMNS,
    NO_FACE,
    PERSONS_DIR,
    PERSONS_SCHEMA,
    TIMELINE_SCHEMA,
    TIMELINES_DIR,
    dominant,
    with_metadata,
)
from fer.storage import Location
from fer.video import manifest, protocol
from fer.video.inputs import VideoInput
from fer.video.persons import Persons, assign_persons
from fer.video.protocol import Collector
from fer.video.shots import shot_index
from fer.video.track import assign_ids

if TYPE_CHECKING:
    from fer.video.pipeline import LabelConfig, LabelSummary

#: Threads writing finished videos' files: writes wait on the disk or an object store, not the CPU.
WRITERS = 4


def timeline_path(out: Location, video_id: str) -> Location:
    return out / TIMELINES_DIR / f"{video_id}.parquet"


def persons_path(out: Location, video_id: str) -> Location:
    return out / PERSONS_DIR / f"{video_id}.parquet"


class VideoWriter:
    """Writes each video as its last rows arrive (:class:`~fer.video.protocol.Collector` says
    when): its timeline, aggregates and manifest entry, into ``summary``'s output."""

    def __init__(
        self,
        config: LabelConfig,
        meta: dict,
        runtime: str,
        inputs: dict[str, tuple[VideoInput, str]],
        superseded: dict[str, list[str]],
        summary: LabelSummary,
        t0: float,
    ):
        self.config = config
        self.out = summary.out
        self.meta = meta
        self.runtime = runtime
        self.inputs = inputs  # video id -> (input, key)
        self.superseded = superseded
        self.summary = summary
        self.collector = Collector(inputs)
        self.videos_finished = 0
        self.failed = 0
        self.t0 = t0
        self.first_rows: dict[str, float] = {}
        self.index = IndexWriter(self.out)
        self._writers = ThreadPoolExecutor(WRITERS)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take a batch of rows (any videos, any order); write the videos it finishes. Their
        aggregates are computed in one call: a batch of photos finishes many one-frame videos,
        and the call's fixed cost (~0.1 s) would otherwise be each photo's."""
        for vid in np.unique(batch["video_id"]):
            self.first_rows.setdefault(str(vid), time.time() - self.t0)
        finished = [(vid, data, *protocol.status(data, self.collector.conflicts.pop(vid, ())))
                    for vid, data in self.collector.add(batch)]  # fmt: skip
        made = {vid: _timeline(data) for vid, data, status, _ in finished if status != manifest.FAILED}
        aggs = _aggregates({vid: table for vid, (table, *_) in made.items()})
        self._write_all([(vid, data, status, reason, made.get(vid), aggs.get(vid))
                         for vid, data, status, reason in finished])  # fmt: skip

    def _write_all(self, jobs: list[tuple]) -> None:
        """Each video's files in a thread of their own (a batch of photos finishes hundreds of videos
        of four small files each); the bookkeeping stays here, in order, and counts every video
        written before a failed write (a full disk) is raised."""
        futures = [self._writers.submit(self._write, *job) for job in jobs]
        failure: Exception | None = None
        counted = 0
        try:
            for job, future in zip(jobs, futures, strict=True):
                try:
                    written = future.result()
                except Exception as exc:  # noqa: BLE001 - raised below, once the others are counted
                    failure = failure or exc
                else:
                    self._finish(job[0], *written)
                counted += 1
        except BaseException:  # a Ctrl-C: the videos being written finish and count, the others are left
            for future in futures[counted:]:
                future.cancel()
            for job, future in zip(jobs[counted:], futures[counted:], strict=True):
                if not future.cancelled() and future.exception() is None:
                    self._finish(job[0], *future.result())
            raise
        if failure is not None:
            raise failure

    def _write(self, vid: str, data: dict, status: str, reason: str, made: tuple | None,
               agg: pa.Table | None) -> tuple[manifest.Entry, bytes, pa.Table | None]:  # fmt: skip
        """Write a video's outputs (any thread): its entry, the entry's bytes and its aggregates."""
        base = self._base(vid)
        if made is None:
            entry, written, agg = *self._write_failed(base, reason), None
        else:
            entry, written = self._save(data, base, status, reason, made, agg)
        for old in self.superseded.get(vid, []):  # the file at this path was replaced: its old labels go
            self._remove_outputs(old)
            manifest.remove(self.out, old)
        return entry, written, agg

    def _finish(self, vid: str, entry: manifest.Entry, written: bytes, agg: pa.Table | None) -> None:
        """Count a video whose outputs are written, and give its rows to the archive index."""
        self.index.add(entry, agg, written)
        self.failed += entry.status == manifest.FAILED
        self.summary.entries.append(entry)
        self.videos_finished += 1
        first = self.first_rows.pop(vid, time.time() - self.t0)
        self.summary.timings[vid] = (round(first, 3), round(time.time() - self.t0, 3))

    def _base(self, vid: str) -> dict:
        """The fields of a video's manifest entry that do not depend on its outcome."""
        video, key = self.inputs[vid]
        return {"video_id": vid, "path": video.path, "model_id": self.meta["id"], "key": key, "content": video.content}

    def _write_failed(self, base: dict, reason: str) -> tuple[manifest.Entry, bytes]:
        entry = manifest.Entry(**base, status=manifest.FAILED, reason=reason)
        written = manifest.record(self.out, entry)
        self._remove_outputs(base["video_id"])  # an earlier run's timeline of this video no longer counts
        return entry, written

    def _remove_outputs(self, vid: str) -> None:
        timeline = timeline_path(self.out, vid)
        timeline.delete()
        aggregates.location(timeline).delete()
        persons_path(self.out, vid).delete()

    def _save(self, data: dict, base: dict, status: str, reason: str, made: tuple,
              agg: pa.Table) -> tuple[manifest.Entry, bytes]:  # fmt: skip
        """Write a video's timeline, aggregates, persons and manifest entry (``made`` by
        :func:`_timeline`, ``agg`` by :func:`_aggregates`), in that order (the entry last: it is
        what says the video is done); returns the entry and its bytes. When a write fails, the
        files this attempt wrote are removed again, so no output is left without its entry."""
        table, persons, frames, faces = made
        out = timeline_path(self.out, base["video_id"])
        written: list[Location] = []
        try:
            _write_timeline(table, out, self._file_meta(data))
            written.append(out)
            aggregates.location(out).write_parquet(agg)
            written.append(aggregates.location(out))
            where = persons_path(self.out, base["video_id"])
            if self.config.persons:
                where.write_parquet(_persons_table(table, persons))
                written.append(where)
            else:  # relabelled without persons: an earlier run's no longer match the timeline
                where.delete()
            seconds = float(agg.column("seconds")[0].as_py() or 0.0) if agg.num_rows else 0.0
            entry = manifest.Entry(
                **base, status=status, reason=reason, frames=frames, faces=faces, seconds=round(seconds, 3),
                output=str(out),
            )  # fmt: skip
            recorded = manifest.record(self.out, entry)
        except EnvironmentFault:
            for f in written:
                f.delete()
            raise
        return entry, recorded

    def _file_meta(self, data: dict) -> dict:
        return {
            "model": {"name": self.meta.get("name"), "id": self.meta["id"], "runtime": self.runtime},
            "detector": self.config.detector,
            "sample_fps": self.config.fps,
            "settings": self.config.settings_key(),
            "video": {k: (v.item() if hasattr(v, "item") else v) for k, v in ((k, data[k][0]) for k in
                      ("video_path", "fps", "width", "height", "rotation", "frames"))},
        }  # fmt: skip

    def finish_incomplete(self) -> None:
        """Videos whose rows never all arrived (their processes died on every try) are failed."""
        for vid, reason in self.collector.unfinished().items():
            self._finish(vid, *self._write_failed(self._base(vid), reason), None)
        self.index.close()
        self._writers.shutdown()


def _timeline(data: dict) -> tuple[pa.Table, Persons, int, int]:
    """Rows of one video (any order) to its timeline table and persons; also frames and face rows."""
    keep = data["frame"] >= 0
    data = {k: v[keep] for k, v in data.items()}
    order = np.lexsort((data["box"][:, 0], data["frame"]))
    data = {k: v[order] for k, v in data.items()}
    box = data["box"]
    shot = _shots(data["frame"], data["time_s"], data["signature"])
    face_ids = assign_ids(data["time_s"], np.where(data["has_face"][:, None], box, np.nan), shots=shot)
    probs, has = data["probs"], data["has_face"]
    face_ids = np.where(has, face_ids, NO_FACE).astype(np.int32)
    persons = assign_persons(face_ids, data["frame"], data["descriptor"], data["quality"])
    emotion, confidence = dominant(probs, has)
    n = len(face_ids)
    columns = {
        "video_id": data["video_id"].astype(str),
        "video_path": data["video_path"].astype(str),
        "frame": data["frame"],
        "time_s": data["time_s"],
        "shot": shot,
        "face_id": face_ids,
        "person": persons.row_person,
        "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "score": data["score"],
        **{name: data["landmarks"][:, i] for i, name in enumerate(LANDMARK_COLUMNS)},
        "emotion": pa.array(list(emotion), pa.string()) if n else pa.array([], pa.string()),
        "confidence": confidence,
        **{name: probs[:, i] for i, name in enumerate(EMOTIONS)},
    }  # fmt: skip
    table = pa.table(columns, schema=TIMELINE_SCHEMA)
    return table, persons, len(np.unique(data["frame"])), int(has.sum())


def _aggregates(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Video id -> the aggregates of its timeline (whole videos' timelines), in one call."""
    import pyarrow.compute as pc

    if not tables:
        return {}
    agg = aggregates.aggregate(pa.concat_tables(tables.values()).to_pandas())
    if len(tables) == 1:
        return dict.fromkeys(tables, agg)
    agg = agg.take(pc.sort_indices(agg, [("video_id", "ascending")]))  # stable: each video's rows keep their order
    ids = agg.column("video_id").to_numpy(zero_copy_only=False)
    if not len(ids):
        return dict.fromkeys(tables, agg)
    bounds = np.r_[np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]), len(ids)]
    found = {ids[a]: agg.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)}
    return {vid: found.get(vid, agg.slice(0, 0)) for vid in tables}


def _persons_table(table: pa.Table, persons: Persons) -> pa.Table:
    """A video's :data:`~fer.schema.PERSONS_SCHEMA` table."""
    marks = np.stack([table.column(c).to_numpy() for c in LANDMARK_COLUMNS], axis=1)
    frame, time_s = table.column("frame").to_numpy(), table.column("time_s").to_numpy()
    best = np.asarray(persons.best_rows, np.int64)
    n = len(persons.tracks)
    person = table.column("person").to_numpy()
    mine = person >= 0  # every person has rows: a person is made of described face rows
    first, last = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(first, person[mine], time_s[mine])
    np.maximum.at(last, person[mine], time_s[mine])
    return pa.table(
        {
            "video_id": [table.column("video_id")[0].as_py()] * n if n else [],
            "person": np.arange(n, dtype=np.int32),
            "face_ids": persons.tracks,
            "rows": np.bincount(person[mine], minlength=n).astype(np.int64),
            "first_s": first,
            "last_s": last,
            "descriptor": list(persons.descriptors),
            "best_frame": frame[best],
            "best_time_s": time_s[best],
            "best_landmarks": list(marks[best]),
            "apart": persons.apart,
        },
        schema=PERSONS_SCHEMA,
    )


def _shots(frame: np.ndarray, time_s: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """The shot of each row (rows sorted by frame; a frame's rows share its signature)."""
    first = np.flatnonzero(np.r_[True, np.diff(frame) != 0])
    per_frame = shot_index(signature[first], time_s[first])
    return np.repeat(per_frame, np.diff(np.r_[first, len(frame)]))


def _write_timeline(table: pa.Table, where: Location, meta: dict) -> None:
    """Write one video's timeline with its metadata, atomically (:meth:`Location.write_parquet`):
    a crash never leaves a half-written file under the final name."""
    where.write_parquet(table.replace_schema_metadata(with_metadata(meta).metadata))
