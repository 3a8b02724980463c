"""The archive index: every video's aggregates and manifest facts in a few Parquet files, so
that an archive-wide summary opens a handful of files, not one (or two) per video.

``OUT/index/`` holds parts, ``part-<ns>-<pid>-<n>.parquet``, which ``fer label``'s driver writes
as videos finish (every :data:`BATCH` videos or :data:`FLUSH_S` seconds, and when the run
ends), and ``compact-<ns>-<pid>.parquet``, the parts merged by :func:`compact` (``fer check
--compact``, or at the end of a run once there are :data:`MAX_PARTS` parts). A part's rows are
its videos' aggregates (:data:`fer.schema.AGGREGATE_SCHEMA`) with the manifest facts a query
needs (:data:`FACTS`); a failed video has one row, to say so.

Which rows count is decided by the manifest, without opening it: one listing of
``OUT/manifest/`` gives each video's entry and its modification time. A video's rows are the
newest part's that holds it (the part's modification time, on the same storage clock as the
entries'; a compacted row keeps its part's); they are fresh when that is newer than the
video's entry. Videos missing from the index or stale (a driver killed before its part, a
relabelled or failed video, an output written before the index) are read from their entries
and per-video aggregates and added as a new part, so the index mends itself on the next query
and nothing is ever lost: it is a cache of the per-video files, which stay the truth.
"""

from __future__ import annotations

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
#: Manifest facts on every row of a video: its input path, status and key (the labelling's
#: input, model and settings), and the time its part was written (``written_ns``, set on
#: compaction; null in parts, whose own modification time stands for it).
FACTS = (
    pa.field("video_path", pa.string()),
    pa.field("status", pa.string()),
    pa.field("key", pa.string()),
    pa.field("written_ns", pa.int64()),
)
INDEX_SCHEMA = pa.schema([*AGGREGATE_SCHEMA, *FACTS])
#: Videos per part, and seconds between parts, while a run goes on.
BATCH = 500
FLUSH_S = 60.0
#: Parts beyond which a run compacts the index when it ends.
MAX_PARTS = 64


def folder(out: Location) -> Location:
    return out / INDEX_DIR


def rows(entry: manifest.Entry, agg: pa.Table | None) -> pa.Table:
    """A video's index rows: its aggregates (None or empty for a failed video: one row) with
    ``entry``'s facts."""
    if agg is None or agg.num_rows == 0:
        agg = pa.Table.from_pylist([{"video_id": entry.video_id, "face_id": NO_FACE}], schema=AGGREGATE_SCHEMA)
    agg = agg.select(AGGREGATE_SCHEMA.names).cast(AGGREGATE_SCHEMA)
    n = agg.num_rows
    facts = [pa.array([entry.path] * n, pa.string()), pa.array([entry.status] * n, pa.string()),
             pa.array([entry.key] * n, pa.string()), pa.nulls(n, pa.int64())]  # fmt: skip
    return pa.Table.from_arrays([*agg.columns, *facts], schema=INDEX_SCHEMA)


class IndexWriter:
    """Collects finished videos' rows and writes them as parts (the driver's; see the module)."""

    def __init__(self, out: Location):
        self.out = out
        self.pending: list[pa.Table] = []
        self.videos = 0
        self.last = time.monotonic()
        self.parts = 0

    def add(self, entry: manifest.Entry, agg: pa.Table | None) -> None:
        """Add a video whose manifest entry is written; a part is written when one is due."""
        self.pending.append(rows(entry, agg))
        self.videos += 1
        if self.videos >= BATCH or time.monotonic() - self.last >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the collected rows as one part (nothing when there are none). A failed write
        is a warning, not an error: the videos' files and entries are written, and the next
        query mends the index from them."""
        from fer import console
        from fer.errors import EnvironmentFault, FerError

        if self.pending:
            where = folder(self.out) / f"part-{time.time_ns()}-{os.getpid()}-{self.parts}.parquet"
            try:
                where.parent.makedirs()
                where.write_parquet(pa.concat_tables(self.pending))
                self.parts += 1
            except (EnvironmentFault, FerError, OSError) as exc:
                console.warn(f"the archive index was not updated ({exc}); queries mend it from the per-video files")
        self.pending, self.videos, self.last = [], 0, time.monotonic()

    def close(self) -> None:
        """Write what is left, mend the index's stale videos (those an earlier run killed before
        its part, say), and compact it once it has :data:`MAX_PARTS` files."""
        from fer import console

        self.flush()
        try:
            load(self.out)
            if len(folder(self.out).files(".parquet")) >= MAX_PARTS:
                compact(self.out)
        except Exception as exc:  # noqa: BLE001 - the labels are saved; the next query mends the index
            console.warn(f"the archive index was not mended ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class _Listing:
    """The manifest's entries (video id -> modification time, ns) and the index's files (name -> the same)."""

    entries: dict[str, int]
    parts: dict[str, int]


def _listing(out: Location) -> _Listing:
    entries = {name.removesuffix(".json"): t for name, t in (out / manifest.MANIFEST_DIR).modified(".json").items()}
    return _Listing(entries, folder(out).modified(".parquet"))


def _read_parts(out: Location, parts: dict[str, int]) -> pa.Table:
    """Every part's rows, each with ``written_ns`` (its own, or its part's time) and its file."""
    import io

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tables = []
    names = list(parts)
    for name, blob in zip(names, read_many([folder(out) / n for n in names]), strict=True):
        if blob is None:  # compacted away meanwhile: its rows are in the compacted file
            continue
        t = pq.read_table(io.BytesIO(blob)).cast(INDEX_SCHEMA)
        written = pc.fill_null(t.column("written_ns"), parts[name])
        t = t.set_column(t.schema.get_field_index("written_ns"), "written_ns", written)
        tables.append(t.append_column("file", pa.array([name] * t.num_rows, pa.string())))
    if not tables:
        return INDEX_SCHEMA.append(pa.field("file", pa.string())).empty_table()
    return pa.concat_tables(tables)


def _newest(table: pa.Table) -> pd.DataFrame:
    """Each video's rows from its newest file only (``written_ns``, then the file name), as a
    DataFrame with NumPy dtypes (as pyarrow gives the per-video files). Decided on the three key
    columns alone, then the rows filtered in Arrow: no copy of the whole index on the way."""
    keys = table.select(["video_id", "written_ns", "file"]).to_pandas()
    order = keys.sort_values(["written_ns", "file"], ascending=False, kind="stable")
    winners = order.drop_duplicates("video_id")[["video_id", "file"]]
    chosen = keys.reset_index().merge(winners, on=["video_id", "file"])["index"].to_numpy()
    mask = np.zeros(len(keys), bool)
    mask[chosen] = True
    return table.filter(pa.array(mask)).to_pandas()


def load(out: Location, *, mend: bool = True) -> pd.DataFrame | None:
    """The aggregates (with :data:`FACTS`) of the videos the manifest counts, from the index,
    mended first where stale (and, with ``mend`` and a writable output, the mended rows stored
    as a new part); None when ``out`` has no manifest (its timelines all count) or a stale
    video has no aggregates yet: the caller reads the per-video files then."""
    if not (out / manifest.MANIFEST_DIR).is_dir():
        return None
    listing = _listing(out)
    newest = _newest(_read_parts(out, listing.parts))
    fresh_at = newest.groupby("video_id").written_ns.max() if len(newest) else pd.Series(dtype=np.int64)
    entry_ns = pd.Series(listing.entries, dtype=np.int64)
    # Strictly newer: where the storage keeps mtimes to the second (S3), an entry rewritten in its
    # part's second is stale, not fresh (a mend too many, never a wrong row).
    stale = entry_ns.index[~(fresh_at.reindex(entry_ns.index) > entry_ns).to_numpy()]
    if len(stale):
        try:
            mended = _from_videos(out, list(stale))
        except Unindexed:
            return None
        if mend:  # a read-only output is still read, just not mended (flush warns)
            writer = IndexWriter(out)
            writer.pending = [mended]
            writer.flush()
        newest = pd.concat([newest[~newest.video_id.isin(stale)], mended.to_pandas()], ignore_index=True)
    counted = newest.video_id.isin(listing.entries.keys()) & newest.status.isin(manifest.LABELLED)
    return newest[counted].drop(columns=["file"], errors="ignore").reset_index(drop=True)


class Unindexed(Exception):
    """A stale video has no per-video aggregates yet (an output older than aggregates): the
    caller reads the per-video files, which aggregates it; the index mends at the next query."""


def _from_videos(out: Location, videos: list[str]) -> pa.Table:
    """Index rows of ``videos`` built from their manifest entries and per-video aggregates."""
    import io
    import json

    import pyarrow.parquet as pq

    entries = [out / manifest.MANIFEST_DIR / f"{v}.json" for v in videos]
    tables = []
    for blob in read_many(entries):
        if blob is None:
            continue  # removed meanwhile: the video does not count
        entry = manifest.Entry(**json.loads(blob))
        agg = None
        if entry.status in manifest.LABELLED:
            blob = read_many([out / AGGREGATES_DIR / f"{entry.video_id}.parquet"])[0]
            if blob is None:
                raise Unindexed(entry.video_id)
            agg = pq.read_table(io.BytesIO(blob))
        tables.append(rows(entry, agg))
    return pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()


def compact(out: Location) -> tuple[int, int]:
    """Merge the index's files into one (each video's newest rows, videos the manifest still
    lists), then remove the files merged; returns (files merged, videos). Files written
    meanwhile are left as they are: their rows are newer and still win."""
    listing = _listing(out)
    if len(listing.parts) < 2:
        return 0, 0
    newest = _newest(_read_parts(out, listing.parts))
    newest = newest[newest.video_id.isin(listing.entries.keys())].drop(columns=["file"])
    table = pa.Table.from_pandas(newest, schema=INDEX_SCHEMA, preserve_index=False)
    (folder(out) / f"compact-{time.time_ns()}-{os.getpid()}.parquet").write_parquet(table)
    for name in listing.parts:
        (folder(out) / name).delete()
    return len(listing.parts), int(newest.video_id.nunique())


def check(out: Location) -> tuple[int, list[str]]:
    """Compare the index with the per-video aggregates, without mending it: (videos whose index
    rows are fresh and equal their aggregates, the other videos: stale, missing or different)."""
    import io

    import pyarrow.parquet as pq

    if not (out / manifest.MANIFEST_DIR).is_dir():
        return 0, []
    listing = _listing(out)
    newest = _newest(_read_parts(out, listing.parts))
    entries = manifest.load(out)
    counted = sorted(v for v, e in entries.items() if e.status in manifest.LABELLED)
    by_video = dict(tuple(newest.groupby("video_id"))) if len(newest) else {}
    aggs = read_many([out / AGGREGATES_DIR / f"{v}.parquet" for v in counted])
    good, bad = 0, []
    for vid, blob in zip(counted, aggs, strict=True):
        rows_ = by_video.get(vid)
        if rows_ is None or rows_.written_ns.max() <= listing.entries.get(vid, 0) or blob is None:
            bad.append(vid)
            continue
        want = pq.read_table(io.BytesIO(blob)).to_pandas()[AGGREGATE_SCHEMA.names]
        got = rows_[AGGREGATE_SCHEMA.names]
        if not _same_rows(got, want):
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
