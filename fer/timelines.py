"""Query emotion timelines written by ``fer label``: read, smooth, split into episodes, summarise.

Every function takes and returns plain pandas DataFrames. Timeline rows have the columns
of :data:`fer.schema.TIMELINE_SCHEMA` (one row per sampled frame and face; ``face_id ==
-1`` marks a frame without a face).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fer import aggregates
from fer.aggregates import durations
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.schema import NO_FACE, NO_PERSON, READABLE_VERSIONS, TIMELINE_SCHEMA, TIMELINES_DIR, dominant, read_metadata
from fer.storage import Location, read_many
from fer.video import manifest
from fer.video.persons import MIN_DESCRIBE_PX
from fer.video.track import max_gap

PROBS = list(EMOTIONS)


def timeline_files(path: str | Path | Location) -> dict[str, Location]:
    """``video_id -> file`` of a labelling output (a path or a URI such as ``s3://...``, see
    :mod:`fer.storage`), its ``timelines/`` folder, or one timeline file.

    Where the output has a manifest, only the timelines of videos it records as ``done`` or
    ``partial`` count: a file left by a crash, a failed re-run or a replaced input does not.

    Raises:
        FerError: the path is missing or holds no timelines.
    """
    loc = path if isinstance(path, Location) else Location.parse(path)
    if loc.is_file():
        return {loc.stem: loc}
    folder = loc / TIMELINES_DIR if (loc / TIMELINES_DIR).is_dir() else loc
    files = {f.stem: f for f in folder.files(".parquet")}
    counted = manifest.labelled(folder.parent if folder.name == TIMELINES_DIR else folder)
    if counted is not None:  # the manifest is the source of truth: orphans and failed videos do not count
        files = {vid: f for vid, f in files.items() if vid in counted}
    if not files:
        if not loc.exists():
            raise FerError(f"no such file or folder: {loc}")
        raise FerError(f"{loc} holds no timelines (*.parquet written by fer label)")
    return files


def _check_schemas(files: list[Location]) -> None:
    """Refuse files written with another timeline schema (read concurrently: on object
    stores each footer is a round trip)."""
    import pyarrow.parquet as pq

    def version(f: Location):
        return read_metadata(pq.read_schema(f.path, filesystem=f.fs)).get("schema_version")

    with ThreadPoolExecutor(min(16, max(1, len(files)))) as pool:
        for f, v in zip(files, pool.map(version, files), strict=True):
            if v is None:
                raise FerError(f"{f}: not a timeline written by fer label (no fer metadata in the Parquet file)")
            if v not in READABLE_VERSIONS:
                raise FerError(
                    f"{f}: timeline schema version {v!r} is not one this fer reads "
                    f"({', '.join(map(str, READABLE_VERSIONS))}); re-run fer label with this version"
                )


def read(
    path: str | Path | Location,
    videos: Sequence[str] | str | None = None,
    faces: Sequence[int] | int | None = None,
    start: float | None = None,
    end: float | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read timelines, touching only what the query needs.

    Args:
        path: a ``fer label`` output (a path or a URI such as ``s3://bucket/labels``), its
            ``timelines/`` folder, or one file.
        videos: video ids to read (a video's file is named by its id, so only those files
            are opened); None reads the whole archive.
        faces: face ids to keep (no-face rows are dropped when given).
        start: keep rows with ``start <= time_s`` (seconds).
        end: keep rows with ``time_s < end`` (seconds).
        columns: columns to read (``video_id``, ``frame``, ``time_s`` and ``face_id`` are
            always included).

    The time and face filters are pushed down to pyarrow, which skips row groups by their
    statistics. Returns rows sorted by video, time and face.
    """
    import pyarrow.dataset as ds

    files = _select(path, videos)
    _check_schemas(list(files.values()))
    expr = None
    if faces is not None:
        ids = [faces] if isinstance(faces, int) else list(faces)
        expr = _and(expr, ds.field("face_id").isin(ids))
    if start is not None:
        expr = _and(expr, ds.field("time_s") >= start)
    if end is not None:
        expr = _and(expr, ds.field("time_s") < end)
    cols = None
    if columns is not None:
        cols = list(dict.fromkeys(["video_id", "frame", "time_s", "face_id", *columns]))
    first = next(iter(files.values()))
    # The current schema for every file: columns an older version lacks come back null.
    dataset = ds.dataset(
        [f.path for f in files.values()], schema=TIMELINE_SCHEMA, format="parquet", filesystem=first.fs
    )
    table = dataset.to_table(columns=cols, filter=expr)
    df = table.to_pandas()
    if "shot" in df and df.shot.isna().any():  # files written before shots (schema 1-2): one shot each
        df["shot"] = df.shot.fillna(0).astype(np.int32)
    if "person" in df and df.person.isna().any():  # files written before persons (schema 1-3): none
        df["person"] = df.person.fillna(NO_PERSON).astype(np.int32)
    if faces is not None and df.empty:
        raise FerError(f"no rows for face {faces} in {', '.join(files)}")
    return df.sort_values(["video_id", "time_s", "face_id"], kind="stable").reset_index(drop=True)


def _select(path, videos: Sequence[str] | str | None) -> dict[str, Location]:
    """The timeline files of ``videos`` (all when None), each named as :func:`find_video` takes."""
    wanted = None if videos is None else [videos] if isinstance(videos, str) else list(videos)
    direct = _by_id(path, wanted) if wanted else None
    if direct is not None:  # every name is the id of a counted video: no archive-wide listing
        return direct
    files = timeline_files(path)
    if wanted is None:
        return files
    paths: dict[str, str] | None = None  # read only when a name is not an id
    ids = []
    for name in wanted:
        if name not in files and paths is None:
            paths = video_paths(files)
        ids.append(find_video(name, files, paths or {}, where=path))
    return {v: files[v] for v in ids}


def _by_id(path, ids: list[str]) -> dict[str, Location] | None:
    """``id -> timeline`` when ``path`` is a labelling output and each of ``ids`` is the id of a
    video its manifest counts (reading those entries only); None otherwise (names to resolve)."""
    import json

    out = _output(path)
    if out is None or not (out / manifest.MANIFEST_DIR).is_dir():
        return None
    if len(ids) > 16:  # many names: one listing of the archive costs less than a request each
        return None
    entries = read_many([out / manifest.MANIFEST_DIR / f"{v}.json" for v in ids])
    try:
        if any(blob is None or json.loads(blob).get("status") not in manifest.LABELLED for blob in entries):
            return None
    except ValueError:  # an unreadable entry: the full resolution warns about it
        return None
    files = {v: out / TIMELINES_DIR / f"{v}.parquet" for v in ids}
    return files if all(f.is_file() for f in files.values()) else None


def one_video(path: str | Path | Location, video: str | None = None) -> str:
    """The id of the video ``video`` names (see :func:`find_video`), or of the only video
    at ``path`` when None.

    Raises:
        FerError: the name matches no video or several, or None is given and there are several.
    """
    if video is not None:
        return next(iter(_select(path, video)))
    files = timeline_files(path)
    if len(files) > 1:
        raise FerError(f"{path} holds {len(files)} videos; choose one with --video (e.g. {next(iter(files))})")
    return next(iter(files))


def find_video(name: str, files: dict[str, Location], paths: dict[str, str], where="") -> str:
    """The id of the one video ``name`` means: its id, its input path (as given or absolute),
    its file name or stem, or an unambiguous prefix of any of them (``paths``: id -> path).

    Raises:
        FerError: no video or several match (the message lists them).
    """
    if name in files:
        return name

    def exact(vid: str) -> bool:
        p = paths.get(vid)
        return bool(p) and (
            name in (p, os.path.basename(p), Path(p).stem) or os.path.abspath(name) == os.path.abspath(p)
        )

    def prefix(vid: str) -> bool:
        p = paths.get(vid)
        return (
            vid.startswith(name)
            or bool(p)
            and (p.startswith(name) or os.path.basename(p).startswith(name) or os.path.abspath(p).startswith(name))
        )

    for test in (exact, prefix):
        found = [vid for vid in files if test(vid)]
        if len(found) == 1:
            return found[0]
        if found:
            raise FerError(f"video {name!r} is ambiguous: it matches {_named(found, paths)}; give more of its path")
    raise FerError(f"unknown video {name!r} in {where} (videos: {_named(list(files), paths)})")


def _output(path: str | Path | Location) -> Location | None:
    """The labelling output ``path`` names (the output or its ``timelines/``), else None."""
    loc = path if isinstance(path, Location) else Location.parse(path)
    if loc.name == TIMELINES_DIR:
        return loc.parent
    return loc if (loc / TIMELINES_DIR).is_dir() else None


def _indexed(path: str | Path | Location, rows: str | None, *, mend: bool = True) -> pd.DataFrame | None:
    """The index's aggregate rows of kind ``rows`` (:data:`fer.index.ROWS`, None: all) of the output
    at ``path``; None when it is not an output with a manifest, or not indexable now."""
    from fer import index

    out = _output(path)
    return None if out is None else index.load(out, rows, mend=mend)


def with_paths(table: pd.DataFrame, path: str | Path | Location) -> pd.DataFrame:
    """``table`` with each ``video_id``'s input path inserted beside it as ``video_path``
    (what people recognise; from the archive index, else the manifest, see :func:`video_paths`)."""
    if table.empty:
        return table.assign(video_path=pd.Series(dtype=str))
    indexed = _indexed(path, "video", mend=False)
    if indexed is not None and set(table.video_id) <= set(indexed.video_id):
        paths = dict(zip(indexed.video_id, indexed.video_path, strict=True))
    else:
        paths = video_paths(_select(path, list(dict.fromkeys(table.video_id))))
    out = table.copy()
    out.insert(list(out.columns).index("video_id") + 1, "video_path", out.video_id.map(paths).fillna(""))
    return out


def video_paths(files: dict[str, Location]) -> dict[str, str]:
    """``video_id -> input path`` of timeline files: from the manifest beside them, else from
    each file's metadata (read concurrently: on object stores each footer is a round trip)."""
    import pyarrow.parquet as pq

    first = next(iter(files.values()))
    folder = first.parent
    base = folder.parent if folder.name == TIMELINES_DIR else folder
    paths = {vid: e.path for vid, e in manifest.load(base).items() if vid in files}
    missing = [vid for vid in files if vid not in paths]

    def footer_path(vid: str) -> str:
        f = files[vid]
        return read_metadata(pq.read_schema(f.path, filesystem=f.fs)).get("video", {}).get("video_path", "")

    with ThreadPoolExecutor(min(16, max(1, len(missing)))) as pool:
        paths.update(zip(missing, pool.map(footer_path, missing), strict=True))
    return paths


def _and(a, b):
    return b if a is None else a & b


def _named(ids: list[str], paths: dict[str, str], n: int = 5) -> str:
    """Some videos as ``path (id)``, for messages."""
    shown = [f"{paths[v]} ({v})" if paths.get(v) else v for v in ids[:n]]
    return ", ".join(shown) + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def _redominate(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``emotion`` and ``confidence`` from the probability columns."""
    probs = df[PROBS].to_numpy()
    emotion, confidence = dominant(probs, ~np.isnan(probs).any(axis=1))
    df["emotion"] = pd.Series(emotion, index=df.index)
    df["confidence"] = confidence
    return df


def smooth(df: pd.DataFrame, window_s: float = 0.5, method: str = "ema") -> pd.DataFrame:
    """Smooth each face's probabilities over time; returns a new DataFrame.

    Args:
        window_s: ``ema``: the time constant (a sample ``dt`` later weighs
            ``1 - exp(-dt / window_s)``, so uneven sampling is handled); ``median``:
            the width of the trailing time window.
        method: ``"ema"`` or ``"median"``.

    Probabilities are renormalised to sum to 1 and ``emotion``/``confidence`` recomputed;
    no-face rows are unchanged.
    """
    if method not in ("ema", "median"):
        raise FerError(f"unknown smoothing method {method!r}; choose ema or median")
    if window_s <= 0:
        raise FerError("the smoothing window must be positive")
    out = df.copy()
    faces = out[out.face_id != NO_FACE].sort_values(["video_id", "face_id", "time_s"])
    for _, group in faces.groupby(["video_id", "face_id"], sort=False):
        probs = group[PROBS].to_numpy(np.float64)
        times = group.time_s.to_numpy()
        if method == "ema":
            smoothed = np.empty_like(probs)
            smoothed[0] = probs[0]
            alpha = 1 - np.exp(-np.diff(times) / window_s)
            for i in range(1, len(probs)):
                smoothed[i] = smoothed[i - 1] + alpha[i - 1] * (probs[i] - smoothed[i - 1])
        else:
            frame = pd.DataFrame(probs, index=pd.to_timedelta(times, unit="s"))
            smoothed = frame.rolling(pd.Timedelta(seconds=window_s)).median().to_numpy(copy=True)
        smoothed /= smoothed.sum(axis=1, keepdims=True)
        out.loc[group.index, PROBS] = smoothed.astype(np.float32)
    return _redominate(out)


def episodes(df: pd.DataFrame, min_duration_s: float = 0.0, max_gap_s: float | None = None) -> pd.DataFrame:
    """Emotion episodes: contiguous runs of one dominant emotion per face ('segments' are
    only the pieces a video is split into for labelling).

    A run ends when the dominant emotion changes or the face is unseen for more than
    ``max_gap_s`` (default: the tracker's gap for the video's sampling,
    :func:`fer.video.track.max_gap`); runs shorter than ``min_duration_s`` are dropped.

    Returns columns ``video_id, face_id, emotion, start_s, end_s, duration_s, frames,
    mean_prob`` (the mean probability of the run's emotion), sorted by video, face, start.
    """
    cols = ["video_id", "face_id", "emotion", "start_s", "end_s", "duration_s", "frames", "mean_prob"]
    faces = df[df.face_id != NO_FACE].copy()
    if faces.empty:
        return pd.DataFrame(columns=cols)
    faces["duration"] = durations(df).loc[faces.index]
    faces = faces.sort_values(["video_id", "face_id", "time_s"])
    key = faces.video_id.astype(str) + "\0" + faces.face_id.astype(str)
    if max_gap_s is None:
        limit = faces.video_id.map(df.groupby("video_id").time_s.agg(lambda t: max_gap(t.to_numpy())))
    else:
        limit = max_gap_s
    gap = faces.time_s.diff() > limit
    new_run = (key != key.shift()) | (faces.emotion != faces.emotion.shift()) | gap
    faces["run"] = new_run.cumsum()
    faces["p"] = faces[PROBS].to_numpy()[np.arange(len(faces)), faces.emotion.map(EMOTIONS.index).to_numpy()]
    runs = faces.groupby("run").agg(
        video_id=("video_id", "first"),
        face_id=("face_id", "first"),
        emotion=("emotion", "first"),
        start_s=("time_s", "min"),
        last_s=("time_s", "max"),
        last_duration=("duration", "last"),
        frames=("frame", "count"),
        mean_prob=("p", "mean"),
    )
    runs["end_s"] = runs.last_s + runs.last_duration
    runs["duration_s"] = runs.end_s - runs.start_s
    runs = runs[runs.duration_s >= min_duration_s]
    return runs[cols].sort_values(["video_id", "face_id", "start_s"]).reset_index(drop=True)


def summarize(df: pd.DataFrame, by: str = "video") -> pd.DataFrame:
    """Per video, shot or face: presence, time-weighted emotion shares and mean probabilities.

    ``by="video"``: ``video_id, frames, seconds, face_frames, face_share, face_seconds,
    faces, dominant, share_<emotion>..., mean_<emotion>...``; a video without faces has
    zero presence, zero shares and no dominant emotion.
    ``by="shot"``: ``video_id, shot, first_s, last_s`` (its first and last sampled time), then
    as by video.
    ``by="person"``: ``video_id, person, faces, first_s, last_s, seconds, frames, dominant``, then
    as by face.
    ``by="face"``: ``video_id, face_id, shot, first_s, last_s, seconds, frames, dominant,
    share_<emotion>..., mean_<emotion>...``.

    Shares weigh each face row by the time it stands for, so sampling gaps count fairly.
    Computed as :func:`summary` computes it, through the rows' aggregates.
    """
    return aggregates.summarize(aggregates.aggregate(df).to_pandas(), by=by)


def _srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(episodes: pd.DataFrame) -> str:
    """SubRip subtitles of emotion episodes (from :func:`episodes`), one cue per episode,
    so the labels can be watched on top of the video in any player."""
    cues = []
    for i, row in enumerate(episodes.sort_values(["start_s", "face_id"]).itertuples(), 1):
        text = f"face {row.face_id}: {row.emotion} ({row.mean_prob:.0%})"
        cues.append(f"{i}\n{_srt_time(row.start_s)} --> {_srt_time(row.end_s)}\n{text}\n")
    return "\n".join(cues)


# ------------------------------------------------------------------ archive-scale queries


def summary(
    path: str | Path | Location,
    videos: Sequence[str] | str | None = None,
    by: str = "video",
    address: str | None = None,
) -> pd.DataFrame:
    """:func:`summarize` of whole videos, from the per-video aggregates that ``fer label``
    writes (``OUT/aggregates/``), so memory and time grow with the number of videos and
    faces, not frames. Videos labelled before aggregates existed are aggregated from their
    timeline on first use (one at a time, stored back when the output is writable; on the
    cluster at ``address`` when given).

    >>> summary("out", by="face")      # same table as summarize(read("out"), by="face")
    """
    aggregates.check_by(by)
    table = aggregates.summarize(load_aggregates(path, videos, address=address, by=by), by=by)
    if by == "person" and table.empty:
        _no_persons(path)
    return table


def _no_persons(path) -> None:
    raise FerError(
        f"{path}: no persons: no face was described (labelled with --no-persons, before persons existed, with a "
        f"detector without mouth landmarks such as blazeface, or every face under {MIN_DESCRIBE_PX} px); "
        "fer label --overwrite adds them"
    )


def load_aggregates(
    path: str | Path | Location, videos: Sequence[str] | str | None = None, address: str | None = None,
    by: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The aggregates (:data:`fer.schema.AGGREGATE_SCHEMA`) of the selected videos: for a whole
    labelling output, from its archive index (:mod:`fer.index`: a few files, however many videos),
    only the rows a summary ``by`` video, shot, face or person needs (None: all)."""
    import pyarrow.dataset as ds

    kind = {"video": "video", "shot": "shot"}.get(by) if by else None
    indexed = _indexed(path, kind) if videos is None else None
    if indexed is not None:
        return indexed[aggregates.AGGREGATE_SCHEMA.names]
    files = _select(path, videos)
    stored = {f.stem: f for f in _aggregates_folder(files).files(".parquet")} if files else {}
    missing = [f for vid, f in files.items() if vid not in stored]
    if missing:
        _aggregate_missing(missing, address)
        stored.update({f.stem: aggregates.location(f) for f in missing})
    locs = [stored[v] for v in files]
    table = ds.dataset([f.path for f in locs], schema=aggregates.AGGREGATE_SCHEMA, filesystem=locs[0].fs).to_table()
    return table.to_pandas()


def _aggregates_folder(files: dict[str, Location]) -> Location:
    return aggregates.location(next(iter(files.values()))).parent


def _aggregate_one(timeline: Location) -> None:
    """Compute and store one video's aggregates from its timeline."""
    table = aggregates.aggregate(read(timeline))
    where = aggregates.location(timeline)
    try:
        where.parent.makedirs()
        where.write_parquet(table)
    except (OSError, FerError) as exc:
        raise FerError(f"cannot store aggregates for {timeline.stem} in {where.parent}: {exc}") from None


def _aggregate_missing(files: list[Location], address: str | None) -> None:
    if address is None:
        for f in files:
            _aggregate_one(f)
        return
    import ray

    from fer._ray import connect

    connect(address)
    task = ray.remote(_aggregate_one)
    ray.get([task.remote(f) for f in files])


#: Timeline files per scan task on a cluster: enough that a task's start-up (~10 ms) is small
#: against its reads, few enough that an archive of thousands of videos spreads over every node.
FILES_PER_SCAN_TASK = 16


def scan(
    path: str | Path | Location,
    where: str | None = None,
    columns: Sequence[str] | None = None,
    videos: Sequence[str] | str | None = None,
    limit: int | None = None,
    address: str | None = None,
) -> pd.DataFrame:
    """The timeline rows matching an SQL condition, read with bounded memory.

    DuckDB streams the Parquet files (only the columns the query needs, row groups skipped
    by their statistics) and only matching rows are kept, so memory grows with the result,
    not the archive. ``where`` is an SQL expression over the timeline columns, e.g.
    ``"emotion = 'happy' AND confidence > 0.8"``. With ``address`` the files are scanned by
    tasks on that Ray cluster and the matching rows gathered here.

    >>> scan("out", "emotion = 'fear' AND time_s < 60", columns=["video_id", "time_s", "fear"])
    """
    files = list(_select(path, videos).values())
    people = _people(files)
    known = QUERY_SCHEMA.names
    cols = (
        list(columns) if columns else list(TIMELINE_SCHEMA.names) + (["identity", "name"] if people is not None else [])
    )
    asked = set(columns or ()) | set(re.findall(r"\b(identity|name)\b", re.sub(r"'[^']*'", "", where or "")))
    if people is None and asked & {"identity", "name"}:
        raise FerError(
            f"{'--where' if where else '--columns'}: this output has no identities yet (fer people OUT makes them)"
        )
    unknown = [c for c in cols if c not in known]
    if unknown:
        raise FerError(f"--columns: unknown column {unknown[0]!r}; columns: {', '.join(known)}")
    if address is None:
        df = _duckdb_scan(files, where, cols, limit, people)
    else:
        import ray

        from fer._ray import connect

        connect(address)
        task = ray.remote(_duckdb_scan)
        chunks = [files[i : i + FILES_PER_SCAN_TASK] for i in range(0, len(files), FILES_PER_SCAN_TASK)]
        df = pd.concat(ray.get([task.remote(c, where, cols, limit, people) for c in chunks]), ignore_index=True)
    order = [c for c in ("video_id", "time_s", "face_id") if c in df.columns]
    df = df.sort_values(order, kind="stable") if order else df
    return (df.head(limit) if limit is not None else df).reset_index(drop=True)


#: What ``fer query`` reads: the timeline's columns, and each row's archive-wide ``identity`` and
#: its ``name`` (:mod:`fer.people`; null before ``fer people`` ran or for a row without a person).
QUERY_SCHEMA = TIMELINE_SCHEMA.append(pa.field("identity", pa.string())).append(pa.field("name", pa.string()))


def _people(files: list[Location]) -> pa.Table | None:
    """``(video_id, person, identity, name)`` of the output the timeline ``files`` belong to, when
    ``fer people`` has joined its persons (:func:`fer.people.membership`)."""
    from fer.people import membership

    folder = files[0].parent
    return membership(folder.parent if folder.name == TIMELINES_DIR else folder)


def _duckdb_scan(
    files: list[Location], where: str | None, cols: list[str], limit: int | None, people: pa.Table | None = None
) -> pd.DataFrame:
    """Run the scan in DuckDB: its own parallel Parquet reader for local files (measured 2.4x
    pyarrow's scanner as DuckDB's input, benchmarks/timelines_query.py), pyarrow's
    filesystems for object stores. Files of an older schema lack columns: read by name.
    ``people`` (:func:`_people`) gives each row its identity and name."""
    import duckdb

    con = duckdb.connect()
    # Every column of the current schema, NULL where an older file lacks it: the files are read
    # by name after an empty table of the full schema (UNION ALL BY NAME keeps its order and types).
    con.register("fer_schema", pa.Table.from_batches([], TIMELINE_SCHEMA))
    full = "(SELECT * FROM fer_schema UNION ALL BY NAME SELECT * FROM {})"
    # Files written before shots (schema 1-2) are one shot each, before persons (1-3) have none,
    # as read() gives them.
    fill = f"COALESCE(shot, 0) AS shot, COALESCE(person, {NO_PERSON}) AS person"
    rows = f"(SELECT * REPLACE ({fill}) FROM {{}})"
    if people is None:  # no join: the scan stays a plain scan
        rows = f"(SELECT *, NULL::VARCHAR AS identity, NULL::VARCHAR AS name FROM {rows})"
    else:
        con.register("fer_people", people)
        rows = (f"(SELECT r.*, p.identity, p.name FROM {rows} r LEFT JOIN fer_people p "
                "ON r.video_id = p.video_id AND r.person = p.person)")  # fmt: skip
    select = f"SELECT {', '.join(cols)} FROM {rows}"
    tail = (f" WHERE {where}" if where else "") + (f" LIMIT {int(limit)}" if limit is not None else "")
    try:
        _check_where(con, where)
        if files[0].is_local:
            source = full.format("read_parquet($files, union_by_name=true)")
            return con.execute(select.format(source) + tail, {"files": [f.path for f in files]}).df()
        import pyarrow.dataset as ds

        paths = [f.path for f in files]
        con.register("timelines", ds.dataset(paths, schema=TIMELINE_SCHEMA, format="parquet", filesystem=files[0].fs))
        return con.sql(select.format("timelines") + tail).df()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise FerError(f"reading {len(files)} timeline file(s) in {files[0].parent.uri}: {first}") from None
    finally:
        con.close()


def _check_where(con, where: str | None) -> None:
    """Raise a one-line error naming ``--where`` if the condition does not compile against the
    timeline schema, or compares a column with an unquoted emotion (``emotion = happy``: the
    column ``happy``, a number, where the word was meant; it fails on every row), before any
    file is read, so a reading error is not blamed on it."""
    import duckdb

    if not where:
        return
    con.register("fer_query", pa.Table.from_batches([], QUERY_SCHEMA))
    try:
        con.execute(f"SELECT * FROM fer_query WHERE {where}")
    except duckdb.Error as exc:
        raise FerError(f"--where {where!r}: {str(exc).strip().splitlines()[0]}{_quote_hint(where)}") from None
    hint = _quote_hint(where)
    if hint:  # run it on a row of the schema: only then does the comparison of a word with a number fail
        con.register("fer_row", pa.table({f.name: pa.array([_SAMPLE.get(str(f.type))], f.type) for f in QUERY_SCHEMA}))
        try:
            con.execute(f"SELECT * FROM fer_row WHERE {where}")
        except duckdb.Error as exc:
            raise FerError(f"--where {where!r}: {str(exc).strip().splitlines()[0]}{hint}") from None


#: A value of each timeline column type, for :func:`_check_where`'s one row.
_SAMPLE = {"string": "neutral", "int32": 0, "int64": 0, "float": 0.5, "double": 0.5, "bool": False}


def _quote_hint(where: str) -> str:
    """A hint when ``where`` compares a column with a bare word that names an emotion (a
    column itself, the emotion's probability), where the user meant the word."""
    import re

    for column, op, word in re.findall(r"\b(\w+)\s*(=|!=|<>)\s*([A-Za-z_]\w*)\b(?!\s*\()", where):
        if word in EMOTIONS and column not in EMOTIONS:
            return f" (to compare with the word, quote it: {column} {op} '{word}')"
    return ""


def top_videos(path: str | Path | Location, emotion: str, n: int = 10, address: str | None = None) -> pd.DataFrame:
    """The ``n`` videos with the largest time share of ``emotion`` (from the aggregates)."""
    if emotion not in EMOTIONS:
        raise FerError(f"--emotion: unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    table = summary(path, address=address)
    return table.sort_values([f"share_{emotion}", "video_id"], ascending=[False, True]).head(n).reset_index(drop=True)


def emotion_minutes(path: str | Path | Location, by: str = "video", address: str | None = None) -> pd.DataFrame:
    """Minutes during which each emotion dominated, per video, shot or face (from the aggregates)."""
    aggregates.check_by(by)
    rows = aggregates.rows_by(load_aggregates(path, address=address, by=by), by)
    if by == "person" and rows.empty:
        _no_persons(path)
    out = pd.DataFrame({e: rows[f"sec_{e}"] / 60.0 for e in EMOTIONS}, index=rows.index)
    return out.sort_index().reset_index()
