"""Timeline queries at archive scale: summaries, filtered scans and single-video reads.

Writes synthetic archives in the labelling schema (every frame of 25-fps videos of 3 to
100 minutes, one face with gaps, aggregates, manifest entries and the archive index as ``fer
label`` writes them), then times each query in a fresh process and reports that process's peak memory:

- archive summary: from every frame (``summarize(read(archive))``: one DataFrame; only run up
  to ``--full-load-max`` rows), from the per-video aggregate files, and ``summary(archive)``
  (from the archive index, :mod:`fer.index`);
- a filtered scan (``emotion = 'happy' AND confidence > 0.9``, five columns) with DuckDB
  (``fer.timelines.scan``) and, for comparison, pyarrow's streaming dataset scanner;
- ``read`` of one video;
- ``--top`` and ``--minutes`` (``top_videos``, ``emotion_minutes``: from the aggregates), and DuckDB
  reading every aggregate file itself (``SELECT ... FROM read_parquet('aggregates/*.parquet')``),
  the floor any summary over per-video files has.

``--videos N --frames-per-video F`` draws the archive by file count instead (N videos of F
frames: 24,000 videos is the file count of ~10^9 rows of real archives, written in minutes:
the videos are copies of 16 drawn ones under their own ids).

Usage: python benchmarks/timelines_query.py [--rows 10000000,100000000] [--workdir /tmp/fer-tl-bench]
       python benchmarks/timelines_query.py --videos 24000 --frames-per-video 1500
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)

FPS = 25.0
WHERE = "emotion = 'happy' AND confidence > 0.9"
SCAN_COLUMNS = ["video_id", "frame", "time_s", "face_id", "confidence"]


def video_lengths(total_rows: int, seed: int = 0) -> list[int]:
    """Frames per video: 3 to 100 minutes at 25 fps (log-uniform), summing to ``total_rows``."""
    rng = np.random.default_rng(seed)
    lengths, left = [], total_rows
    while left > 0:
        n = int(np.exp(rng.uniform(np.log(3 * 60 * FPS), np.log(100 * 60 * FPS))))
        lengths.append(min(n, left))
        left -= n
    return lengths


def _strings(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([value])).cast(pa.string())


def video_tables(vid: str, rows: int, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """A video's timeline (one face with gaps, every frame at 25 fps, one shot, person 0) and aggregates."""
    from fer.aggregates import aggregate
    from fer.labels import EMOTIONS
    from fer.schema import LANDMARK_COLUMNS, NO_PERSON, TIMELINE_SCHEMA, with_metadata

    frame = np.arange(rows)
    has = rng.random(rows) > 0.1
    logits = rng.normal(size=(rows, len(EMOTIONS))).astype(np.float32)
    logits += np.sin(frame[:, None] / 90 + np.arange(len(EMOTIONS))).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs[~has] = np.nan
    best = np.nan_to_num(probs).argmax(axis=1)
    emotion = pa.DictionaryArray.from_arrays(pa.array(best.astype(np.int32), mask=~has), pa.array(list(EMOTIONS))).cast(
        pa.string()
    )
    nan = np.full(rows, np.nan, np.float32)
    box = np.where(has[:, None], [100, 80, 120, 120], np.nan).astype(np.float32)
    columns = {
        "video_id": _strings(vid, rows), "video_path": _strings(f"/archive/{vid}.mp4", rows),
        "frame": frame, "time_s": frame / FPS, "shot": np.zeros(rows, np.int32),
        "face_id": np.where(has, 0, -1).astype(np.int32), "person": np.where(has, 0, NO_PERSON).astype(np.int32),
        "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "score": np.where(has, 0.9, np.nan).astype(np.float32), **dict.fromkeys(LANDMARK_COLUMNS, nan),
        "emotion": emotion, "confidence": np.where(has, np.nan_to_num(probs).max(axis=1), np.nan).astype(np.float32),
        **{e: probs[:, i] for i, e in enumerate(EMOTIONS)},
    }  # fmt: skip
    table = pa.table(columns, schema=TIMELINE_SCHEMA).replace_schema_metadata(with_metadata({}).metadata)
    return table, aggregate(table.to_pandas())


def write_video(root: Path, vid: str, timeline: pa.Table, agg: pa.Table) -> None:
    """Write a video's two files, its id (and path) replacing the tables' own."""
    from fer.schema import AGGREGATES_DIR, TIMELINES_DIR

    def renamed(table: pa.Table) -> pa.Table:
        for name, value in (("video_id", vid), ("video_path", f"/archive/{vid}.mp4")):
            if name in table.column_names:
                i = table.schema.get_field_index(name)
                table = table.set_column(i, table.schema.field(i), _strings(value, table.num_rows))
        return table

    pq.write_table(renamed(timeline), root / TIMELINES_DIR / f"{vid}.parquet", compression="zstd")
    pq.write_table(renamed(agg), root / AGGREGATES_DIR / f"{vid}.parquet", compression="zstd")


#: Distinct videos drawn for an archive drawn by file count; the others are their copies.
TEMPLATES = 16


def write_archive(root: Path, lengths: list[int], *, copies: bool = False) -> int:
    """Write videos of ``lengths`` frames (``copies``: copies of :data:`TEMPLATES` drawn ones) as
    ``fer label`` does: timelines, aggregates, manifest entries, then the archive index in parts
    of :data:`fer.index.BATCH` videos; return the rows."""
    import io
    import json
    from dataclasses import asdict

    from fer import index
    from fer.schema import AGGREGATES_DIR, TIMELINES_DIR
    from fer.video import manifest

    for d in (TIMELINES_DIR, AGGREGATES_DIR, manifest.MANIFEST_DIR, index.INDEX_DIR):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    drawn: list[tuple[pa.Table, pa.Table]] = []
    entries = []
    for v, rows in enumerate(lengths):
        vid = f"video{v:05d}"
        if copies and len(drawn) == TEMPLATES:
            write_video(root, vid, *drawn[v % TEMPLATES])
        else:
            tables = video_tables(vid, rows, rng)
            if copies:
                drawn.append(tables)
            write_video(root, vid, *tables)
        entry = manifest.Entry(video_id=vid, path=f"/archive/{vid}.mp4", status=manifest.DONE, frames=rows,
                               faces=rows, seconds=rows / FPS, key="bench")  # fmt: skip
        (root / manifest.MANIFEST_DIR / f"{vid}.json").write_text(json.dumps(asdict(entry)))
        entries.append(entry)
    for start in range(0, len(entries), index.BATCH):
        batch = entries[start : start + index.BATCH]
        aggs = [
            pq.read_table(io.BytesIO((root / AGGREGATES_DIR / f"{e.video_id}.parquet").read_bytes())) for e in batch
        ]
        stamps = [(root / manifest.MANIFEST_DIR / f"{e.video_id}.json").stat().st_mtime_ns for e in batch]
        part = pa.concat_tables([index.rows(e, a, t) for e, a, t in zip(batch, aggs, stamps, strict=True)])
        pq.write_table(part, root / index.INDEX_DIR / f"part-{time.time_ns()}-0-{start}.parquet", compression="zstd")
    return sum(lengths)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scan_pyarrow(root: str):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from fer.schema import TIMELINE_SCHEMA

    dataset = ds.dataset(f"{root}/timelines", schema=TIMELINE_SCHEMA, format="parquet")
    expr = (pc.field("emotion") == "happy") & (pc.field("confidence") > 0.9)
    parts = [b for b in dataset.to_batches(columns=SCAN_COLUMNS, filter=expr)]
    return pa.Table.from_batches(parts, schema=pa.schema([TIMELINE_SCHEMA.field(c) for c in SCAN_COLUMNS])).to_pandas()


def _duckdb_aggregates(root: str):
    """DuckDB itself reading every aggregate file: the video rows' seconds per emotion."""
    import duckdb

    from fer.labels import EMOTIONS

    seconds = ", ".join(f"sum(sec_{e}) AS sec_{e}" for e in EMOTIONS)
    sql = (f"SELECT video_id, sum(frames) AS frames, {seconds} FROM read_parquet('{root}/aggregates/*.parquet') "
           "WHERE face_id = -1 AND shot IS NULL GROUP BY video_id")  # fmt: skip
    return duckdb.sql(sql).df()


def _full_load(root: str):
    """The archive summary from every frame in one DataFrame."""
    from fer import timelines

    return timelines.summarize(timelines.read(root))


def _summary_files(root: str):
    """The archive summary from the per-video aggregate files, as before the index."""
    from fer import aggregates, timelines

    return aggregates.summarize(timelines.load_aggregates(root, sorted(timelines.timeline_files(root))))


def _timelines(method: str, *args):
    def query(root: str):
        from fer import timelines

        return getattr(timelines, method)(root, *args)

    return query


#: Each query by name: a function of the archive's root that returns its result.
QUERIES = {
    "full": _full_load,
    "files": _summary_files,
    "summary": _timelines("summary"),
    "top": _timelines("top_videos", "happy"),
    "minutes": _timelines("emotion_minutes"),
    "duckdb-raw": _duckdb_aggregates,
    "scan": _timelines("scan", WHERE, SCAN_COLUMNS),
    "scan-pyarrow": _scan_pyarrow,
    "read-one": _timelines("read", "video00003"),
}


def timed(name: str, root: str) -> tuple[float, int, float]:
    """Run the query ``name`` on ``root``: (seconds, result rows, this process's peak MB). The
    imports come first, outside the time (the same for every query: see the imports' own peak)."""
    _imports()
    t = time.perf_counter()
    out = QUERIES[name](root)
    return time.perf_counter() - t, len(out), _peak_mb()


def _imports():
    import duckdb  # noqa: F401

    import fer.timelines  # noqa: F401 - the imports alone, to compare the peaks with

    return 0.0, 0, _peak_mb()


def in_fresh_process(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000000,100000000", help="archive sizes in rows, comma-separated")
    parser.add_argument("--full-load-max", type=int, default=10_000_000, help="largest archive to load whole")
    parser.add_argument("--videos", type=int, help="draw the archive by file count: this many videos...")
    parser.add_argument("--frames-per-video", type=int, default=1500, help="...of this many frames each")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fer-tl-bench"))
    parser.add_argument("--smoke", action="store_true", help="20 videos of 50 frames: for the test suite")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:  # an archive of its own, written anew
        args.videos, args.frames_per_video, args.workdir = 20, 50, Path(tempfile.mkdtemp(prefix="fer-tl-smoke-"))
    if args.videos is not None and args.videos < 4:
        parser.error(f"--videos: at least 4, not {args.videos}")
    _, _, base = in_fresh_process(_imports)
    print(f"peak memory of the imports alone: {base:.0f} MB; scan: WHERE {WHERE}, columns {', '.join(SCAN_COLUMNS)}")
    print(f"{'rows':>12} {'videos':>7} {'query':<34} {'seconds':>8} {'result rows':>12} {'peak MB':>8} {'rows/s':>12}")
    if args.videos:
        plans = [(f"archive-{args.videos}x{args.frames_per_video}", [args.frames_per_video] * args.videos, True)]
    else:
        plans = [(f"archive-{r}", video_lengths(int(r)), False) for r in args.rows.split(",")]
    for name, lengths, copies in plans:
        root, videos = args.workdir / name, len(lengths)
        if not (root / "done").exists():
            t = time.perf_counter()
            total = write_archive(root, lengths, copies=copies)
            (root / "done").write_text(str(total))
            print(f"(wrote {total:,} rows in {videos} videos in {time.perf_counter() - t:.0f} s)")
        total = int((root / "done").read_text())
        queries = [("summary, before: summarize(read())", "full")] if total <= args.full_load_max else []
        queries += [
            ("summary, per-video aggregate files", "files"),
            ("summary: summary() (archive index)", "summary"),
            ("top_videos (--top)", "top"),
            ("emotion_minutes (--minutes)", "minutes"),
            ("DuckDB raw: aggregates/*.parquet", "duckdb-raw"),
            ("scan: fer.timelines.scan (DuckDB)", "scan"),
            ("scan: pyarrow dataset to_batches", "scan-pyarrow"),
            ("read(videos='video00003')", "read-one"),
        ]
        for name, query in queries:
            secs, n, peak = in_fresh_process(timed, query, str(root))
            rate = f"{total / secs:>12,.0f}" if name.startswith("scan") else f"{'':>12}"
            print(f"{total:>12,} {videos:>7} {name:<34} {secs:>8.2f} {n:>12,} {peak:>8.0f} {rate}")
    if args.smoke:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
