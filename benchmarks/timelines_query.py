"""Timeline queries at archive scale: `summarize` over the whole archive and `read` of one video.

Writes a synthetic archive (default 1,000 videos x 10,000 rows = 10 million rows, 30 fps,
one face per frame with gaps) in the labelling schema, then times each query in a fresh
process and reports that process's peak memory.

Usage: python benchmarks/timelines_query.py [--videos 1000] [--rows 10000] [--workdir /tmp/fer-tl-bench]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_archive(folder: Path, videos: int, rows: int) -> int:
    from fer.labels import EMOTIONS
    from fer.schema import TIMELINE_SCHEMA, with_metadata

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta = with_metadata({"model": {"name": "synthetic"}}).metadata
    for v in range(videos):
        vid = f"video{v:05d}"
        frame = np.arange(rows)
        has = rng.random(rows) > 0.1
        logits = rng.normal(size=(rows, len(EMOTIONS))) + np.sin(frame[:, None] / 90 + np.arange(len(EMOTIONS)))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probs[~has] = np.nan
        best = probs.argmax(axis=1) if has.all() else np.nan_to_num(probs).argmax(axis=1)
        emotion = np.where(has, np.array(EMOTIONS, dtype=object)[best], None)
        box = np.where(has[:, None], [100, 80, 120, 120], np.nan).astype(np.float32)
        columns = {
            "video_id": pa.array([vid] * rows), "video_path": pa.array([f"/archive/{vid}.mp4"] * rows),
            "frame": frame, "time_s": frame / 30.0, "face_id": np.where(has, 0, -1).astype(np.int32),
            "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
            "score": np.where(has, 0.9, np.nan).astype(np.float32), "emotion": pa.array(list(emotion), pa.string()),
            "confidence": np.nanmax(np.where(has[:, None], probs, 0), axis=1).astype(np.float32),
            **{e: probs[:, i].astype(np.float32) for i, e in enumerate(EMOTIONS)},
        }  # fmt: skip
        table = pa.table(columns, schema=TIMELINE_SCHEMA).replace_schema_metadata(meta)
        pq.write_table(table, folder / f"{vid}.parquet", compression="zstd")
    return videos * rows


def _summarize_all(folder: str) -> tuple[float, int, int]:
    from fer import timelines

    t = time.perf_counter()
    summary = timelines.summarize(timelines.read(folder))
    return time.perf_counter() - t, len(summary), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _read_one(folder: str) -> tuple[float, int, int]:
    from fer import timelines

    t = time.perf_counter()
    df = timelines.read(folder, videos="video00042")
    return time.perf_counter() - t, len(df), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _baseline() -> tuple[float, int, int]:
    import fer.timelines  # noqa: F401 - the imports alone, to subtract from the peaks

    return 0.0, 0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_fresh_process(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fer-tl-bench"))
    args = parser.parse_args()
    folder = args.workdir / f"{args.videos}x{args.rows}" / "timelines"
    if not folder.is_dir():
        t = time.perf_counter()
        n = write_archive(folder, args.videos, args.rows)
        print(f"wrote {n:,} rows in {args.videos} files in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in folder.glob("*.parquet"))
    one = (folder / "video00042.parquet").stat().st_size
    print(f"archive: {args.videos * args.rows:,} rows, {size / 2**20:.0f} MB on disk")
    _, _, base = in_fresh_process(_baseline)
    secs, n, peak = in_fresh_process(_summarize_all, str(folder))
    print(
        f"summarize(read(archive)): {secs:.1f} s for {n} videos; peak memory {peak / 1024:.0f} MB "
        f"(imports alone: {base / 1024:.0f} MB)"
    )
    secs, n, peak = in_fresh_process(_read_one, str(folder))
    print(
        f"read(archive, videos='video00042'): {secs * 1000:.0f} ms for {n:,} rows; peak memory {peak / 1024:.0f} MB; "
        f"opens one file of {one / 2**20:.2f} MB ({one / size:.2%} of the archive)"
    )


if __name__ == "__main__":
    main()
