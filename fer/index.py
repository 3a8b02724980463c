"""The archive index: every video's aggregates and manifest facts in a few Parquet files, so
that an archive-wide summary opens a handful of files, not one (or two) per video.

``OUT/index/`` holds parts, ``part-<ns>-<pid>-<n>.parquet``, which ``fer label``'s driver writes
as videos finish (every :data:`BATCH` videos or :data:`FLUSH_S` seconds, and when the run
ends), and ``compact-<ns>-<pid>.parquet``, the parts merged by :func:`compact` (``fer check
--compact``, or at the end of a run once there are :data:`MAX_PARTS` files). A part's rows are
its videos' aggregates (:data:`fer.schema.AGGREGATE_SCHEMA`) with the manifest facts a query
needs (:data:`FACTS`); a failed video has one row, to say so.

Which rows count is decided by the manifest without opening it: one listing of
``OUT/manifest/`` gives each video's entry and its modification time, and every index row
carries the modification time of the entry it was made with (``entry_ns``). A video's rows
count when that stamp is its entry's current one, whichever run or file wrote them and in
whatever order; a video without such rows (a driver killed before its part, a video labelled
again, an output older than the index) is read from its entry and per-video aggregates and
added as a new part by the query or run that finds it. The index is a cache of the per-video
files, which stay the truth.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fer.schema import AGGREGATE_SCHEMA, AGGREGATES_DIR, NO_FACE
from fer.storage import Location, read_many
from fer.video import manifest

INDEX_DIR = "index"
#: Manifest facts on every row of a video: its input path, status, key (input, model and
#: settings) and the modification time of the entry the rows were made with.
FACTS = (
    pa.field("video_path", pa.string()),
    pa.field("status", pa.string()),
    pa.field("key", pa.string()),
    pa.field("entry_ns", pa.int64()),
)
INDEX_SCHEMA = pa.schema([*AGGREGATE_SCHEMA, *FACTS])
#: Videos per part, and seconds between parts, while a run goes on.
BATCH = 500
FLUSH_S = 60.0
#: Files beyond which a run compacts the index when it ends.
MAX_PARTS = 64
#: The rows each kind of query reads (a video's own row is always read: it says which rows count).
ROWS = ("video", "shot", "face")


def folder(out: Location) -> Location:
    return out / INDEX_DIR


def rows(entry: manifest.Entry, agg: pa.Table | None, entry_ns: int) -> pa.Table:
    """A video's index rows: its aggregates (None or empty for a failed video: one row; columns
    that aggregates of older versions lack are null) with ``entry``'s facts."""
    if agg is None or agg.num_rows == 0:
        agg = pa.Table.from_pylist([{"video_id": entry.video_id, "face_id": NO_FACE}], schema=AGGREGATE_SCHEMA)
    n = agg.num_rows
    columns = [agg.column(f.name).cast(f.type) if f.name in agg.column_names else pa.nulls(n, f.type)
               for f in AGGREGATE_SCHEMA]  # fmt: skip
    facts = [pa.array([entry.path] * n, pa.string()), pa.array([entry.status] * n, pa.string()),
             pa.array([entry.key] * n, pa.string()), pa.array([entry_ns] * n, pa.int64())]  # fmt: skip
    return pa.Table.from_arrays([*columns, *facts], schema=INDEX_SCHEMA)


class IndexWriter:
    """Collects finished videos' rows and writes them as parts (the driver's; see the module)."""

    def __init__(self, out: Location):
        self.out = out
        self.pending: list[pa.Table] = []
        self.videos = 0
        self.last = time.monotonic()
        self.parts = 0

    def add(self, entry: manifest.Entry, agg: pa.Table | None, written: bytes) -> None:
        """Add a video whose manifest entry was just written (``written``: its bytes); a part is
        written when one is due. The entry's time is read, then its bytes: when they are not ours
        any more (another run replaced the entry meanwhile), the rows are not ours to stamp, and a
        query mends the video from its files instead."""
        where = self.out / manifest.MANIFEST_DIR / f"{entry.video_id}.json"
        try:
            stamp = where.mtime_ns()
            if where.read_bytes() != written:
                return
        except OSError:
            return
        self.pending.append(rows(entry, agg, stamp))
        self.videos += 1
        if self.videos >= BATCH or time.monotonic() - self.last >= FLUSH_S:
            self.flush()

    def flush(self) -> bool:
        """Write the collected rows as one part (nothing when there are none); False when the
        write failed (a warning: the videos' own files are written, and queries mend the index)."""
        from fer import console
        from fer.errors import EnvironmentFault, FerError

        written = True
        if self.pending:
            where = folder(self.out) / f"part-{time.time_ns()}-{os.getpid()}-{self.parts}.parquet"
            try:
                where.parent.makedirs()
                where.write_parquet(pa.concat_tables(self.pending))
                self.parts += 1
            except (EnvironmentFault, FerError, OSError) as exc:
                console.warn(f"the archive index was not updated ({exc}); queries mend it from the per-video files")
                written = False
        self.pending, self.videos, self.last = [], 0, time.monotonic()
        return written

    def close(self) -> None:
        """Write what is left, mend the index's stale videos (those an earlier run killed before
        its part, say), and compact it once it has :data:`MAX_PARTS` files."""
        from fer import console

        if not self.flush():
            return
        try:
            load(self.out, "video")
            if len(folder(self.out).files(".parquet")) >= MAX_PARTS:
                compact(self.out)
        except Exception as exc:  # noqa: BLE001 - the labels are saved; the next query mends the index
            console.warn(f"the archive index was not mended ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class _Listing:
    """The index's files and the manifest's entries (video id -> entry modification time, ns)."""

    parts: list[str]
    entries: dict[str, int]


def _listing(out: Location) -> _Listing:
    # The index first: an entry written between the two listings then only looks stale (mended),
    # where the other order could judge a part newer than the entries it lists.
    parts = sorted(folder(out).modified(".parquet"))
    entries = {n.removesuffix(".json"): t for n, t in (out / manifest.MANIFEST_DIR).modified(".json").items()}
    return _Listing(parts, entries)


def _filter(kind: str | None):
    """The pyarrow filter for the rows a query of ``kind`` (:data:`ROWS`) reads; None: every row."""
    import pyarrow.compute as pc

    video_row = (pc.field("face_id") == NO_FACE) & pc.field("shot").is_null()
    if kind == "video":
        return video_row
    if kind == "shot":
        return pc.field("face_id") == NO_FACE
    return None  # faces and persons: every row (each video's own row included)


def _read_parts(out: Location, parts: list[str], kind: str | None) -> tuple[pa.Table, bool]:
    """The rows of ``kind`` of every part, each with its file's name; and whether every part
    was still there (a concurrent compaction removes parts once its file is written)."""
    import pyarrow.parquet as pq

    from fer import console

    tables, complete = [], True
    for name, blob in zip(parts, read_many([folder(out) / n for n in parts]), strict=True):
        if blob is None:
            complete = False
            continue
        try:
            t = pq.read_table(io.BytesIO(blob), filters=_filter(kind), schema=INDEX_SCHEMA)
        except (pa.ArrowException, OSError) as exc:  # not an index file (a copy cut short?): its videos are mended
            console.warn(f"{folder(out) / name}: not readable as an index file, left out ({exc})")
            continue
        tables.append(t.append_column("file", pa.array([name] * t.num_rows, pa.string())))
    if not tables:
        return INDEX_SCHEMA.append(pa.field("file", pa.string())).empty_table(), complete
    return pa.concat_tables(tables), complete


def _current(table: pa.Table, entries: dict[str, int]) -> tuple[pa.Table, list[str]]:
    """The rows made with each video's current entry (one file's, where several hold them), and
    the videos of ``entries`` without such rows (stale). Decided on the key columns of the
    videos' own rows; the rows are then filtered in Arrow, never copied whole."""
    own = table.filter(_filter("video")).select(["video_id", "entry_ns", "file"]).to_pandas()
    own = own[own.entry_ns.to_numpy() == own.video_id.map(entries).fillna(-1).to_numpy()]
    winners = own.sort_values("file").drop_duplicates("video_id", keep="last")
    stale = sorted(set(entries) - set(winners.video_id))
    keys = table.select(["video_id", "file"]).to_pandas().reset_index()
    chosen = keys.merge(winners[["video_id", "file"]], on=["video_id", "file"])["index"].to_numpy()
    mask = np.zeros(table.num_rows, bool)
    mask[chosen] = True
    return table.filter(pa.array(mask)), stale


def load(out: Location, kind: str | None = None, *, mend: bool = True) -> pd.DataFrame | None:
    """The aggregate rows of ``kind`` (:data:`ROWS`; None: all) of the videos the manifest counts,
    with :data:`FACTS`, from the index; stale videos are read from their own files (and, with
    ``mend``, added to the index). None when ``out`` has no manifest (its timelines all count) or
    a stale video has no aggregates yet: the caller reads the per-video files then."""
    import pyarrow.compute as pc

    if not (out / manifest.MANIFEST_DIR).is_dir():
        return None
    for _ in range(3):  # a concurrent compaction removed a part we listed: list again
        listing = _listing(out)
        table, complete = _read_parts(out, listing.parts, kind)
        if complete:
            break
    table, stale = _current(table, listing.entries)
    if stale:
        try:
            mended = _from_videos(out, stale, listing.entries)
        except Unindexed:
            return None
        if mend and mended.num_rows:
            _add_part(out, mended)
        kept = mended.filter(_filter(kind)) if kind else mended
        table = pa.concat_tables([table.drop_columns(["file"]), kept])
    else:
        table = table.drop_columns(["file"])
    counted = pc.is_in(table.column("status"), pa.array(manifest.LABELLED))
    return table.filter(counted).to_pandas()


class Unindexed(Exception):
    """A stale video has no per-video aggregates yet (an output older than aggregates): the
    caller reads the per-video files, which aggregates it; the index mends at the next query."""


def _from_videos(out: Location, videos: list[str], stamps: dict[str, int]) -> pa.Table:
    """Index rows of ``videos`` made from their manifest entries (as listed: ``stamps``) and
    per-video aggregates, each file set read concurrently."""
    import pyarrow.parquet as pq

    entries = []
    for blob in read_many([out / manifest.MANIFEST_DIR / f"{v}.json" for v in videos]):
        try:
            entries.append(manifest.Entry(**json.loads(blob)) if blob is not None else None)
        except (TypeError, ValueError):
            entries.append(None)  # unreadable: the video does not count (as manifest.load says)
    labelled = [e for e in entries if e is not None and e.status in manifest.LABELLED]
    blobs = read_many([out / AGGREGATES_DIR / f"{e.video_id}.parquet" for e in labelled])
    aggs = dict(zip([e.video_id for e in labelled], blobs, strict=True))
    tables = []
    for entry in entries:
        if entry is None:
            continue
        agg = None
        if entry.video_id in aggs:
            if aggs[entry.video_id] is None:
                raise Unindexed(entry.video_id)
            agg = pq.read_table(io.BytesIO(aggs[entry.video_id]))
        tables.append(rows(entry, agg, stamps.get(entry.video_id, 0)))
    return pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()


def mend(out: Location, videos: list[str]) -> None:
    """Rebuild ``videos``' rows from their own files as a new part (its name sorts after every
    earlier part's, so its rows win where others carry the same entry time)."""
    listing = _listing(out)
    _add_part(out, _from_videos(out, [v for v in videos if v in listing.entries], listing.entries))


def _add_part(out: Location, table: pa.Table) -> None:
    """Write ``table`` as one new part (a failed write warns: see :meth:`IndexWriter.flush`)."""
    writer = IndexWriter(out)
    writer.pending = [table]
    writer.flush()


def compact(out: Location) -> tuple[int, int]:
    """Merge the index's files into one (the rows of each video's current entry, videos the
    manifest still lists), then remove the files merged; returns (files merged, videos).
    Parts written meanwhile stay: a video's rows count by its entry, not by the file."""
    listing = _listing(out)
    if len(listing.parts) < 2:
        return 0, 0
    table, complete = _read_parts(out, listing.parts, None)
    if not complete:
        return 0, 0  # another compaction is at work
    current, _ = _current(table, listing.entries)
    current = current.drop_columns(["file"])
    # "compact-" sorts before "part-": a part written meanwhile with the same entry time still wins.
    (folder(out) / f"compact-{time.time_ns()}-{os.getpid()}.parquet").write_parquet(current)
    for name in listing.parts:
        (folder(out) / name).delete()
    return len(listing.parts), len(set(current.column("video_id").to_pylist()))


def check(out: Location) -> tuple[int, list[str]]:
    """Compare the index with the per-video aggregates, without mending it: (videos whose
    current rows equal their aggregates, the other counted videos: stale, missing or different)."""
    import pyarrow.parquet as pq

    if not (out / manifest.MANIFEST_DIR).is_dir():
        return 0, []
    listing = _listing(out)
    table, _ = _read_parts(out, listing.parts, None)
    current, _ = _current(table, listing.entries)
    df = current.to_pandas()
    by_video = dict(tuple(df.groupby("video_id"))) if len(df) else {}
    counted = sorted(v for v, e in manifest.load(out).items() if e.status in manifest.LABELLED)
    good, bad = 0, []
    for vid, blob in zip(counted, read_many([out / AGGREGATES_DIR / f"{v}.parquet" for v in counted]), strict=True):
        mine = by_video.get(vid)
        if mine is None or blob is None:
            bad.append(vid)
            continue
        want = rows(manifest.Entry(video_id=vid, path="", status=""), pq.read_table(io.BytesIO(blob)), 0)
        if not _same_rows(mine[AGGREGATE_SCHEMA.names], want.to_pandas()[AGGREGATE_SCHEMA.names]):
            bad.append(vid)
            continue
        good += 1
    return good, bad


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal tables up to row order (NaN equal to NaN)."""
    if len(a) != len(b):
        return False
    key = ["face_id", "shot"]
    a = a.sort_values(key, na_position="first").reset_index(drop=True).astype(object)
    b = b.sort_values(key, na_position="first").reset_index(drop=True).astype(object)
    return bool(((a == b) | (a.isna() & b.isna())).all().all())
