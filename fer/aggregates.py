"""Per-video aggregates: what an archive-wide summary needs, in O(faces) rows per video.

``fer label`` writes one small table beside each timeline (``OUT/aggregates/<video_id>.parquet``,
:data:`fer.schema.AGGREGATE_SCHEMA`): a row with ``face_id == -1`` for the video (frames,
seconds, presence) and a row per face. Every figure is a sum, a count or an extreme, so any
selection of videos and faces combines exactly, and :func:`summarize` turns them into the
same table that :func:`fer.timelines.summarize` computes from the frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.schema import AGGREGATE_SCHEMA, AGGREGATES_DIR, NO_FACE, NO_PERSON, TIMELINES_DIR
from fer.storage import Location

PROBS = list(EMOTIONS)
SECONDS = [f"sec_{e}" for e in EMOTIONS]
SUMS = [f"sum_{e}" for e in EMOTIONS]
SUMMARY_BY = ("video", "shot", "face", "person")
#: Seconds a video's only sampled frame stands for (a photo, a one-frame clip): one nominal
#: second, so a photo counts in summaries, ``--top-videos`` and ``--minutes`` like a second of video.
LONE_FRAME_S = 1.0


def location(timeline: Location) -> Location:
    """Where a timeline's aggregates live: ``OUT/aggregates/`` beside ``OUT/timelines/``, or an
    ``aggregates/`` folder inside any other folder of timelines."""
    folder = timeline.parent
    base = folder.parent if folder.name == TIMELINES_DIR else folder
    return base / AGGREGATES_DIR / timeline.name


def durations(df: pd.DataFrame) -> pd.Series:
    """Seconds each row stands for: time to the video's next sampled frame (the last frame
    gets the median step; a video's only frame :data:`LONE_FRAME_S`)."""
    frames = df.drop_duplicates(["video_id", "frame"])[["video_id", "frame", "time_s"]].sort_values(
        ["video_id", "time_s"]
    )
    step = frames.groupby("video_id").time_s.diff(-1).abs()
    median = frames.assign(step=step).groupby("video_id").step.transform("median")
    frames["duration"] = step.fillna(median).fillna(LONE_FRAME_S)
    keyed = frames.set_index(["video_id", "frame"]).duration
    return pd.Series(keyed.reindex(pd.MultiIndex.from_frame(df[["video_id", "frame"]])).to_numpy(), index=df.index)


def aggregate(df: pd.DataFrame) -> pa.Table:
    """The aggregates of timeline rows (one or more whole videos) as an Arrow table."""
    df = df.assign(duration=durations(df), shot=_shots(df), person=_persons(df))
    faces = df[df.face_id != NO_FACE]
    emotion_seconds = pd.get_dummies(faces.emotion).reindex(columns=PROBS, fill_value=0).mul(faces.duration, axis=0)
    emotion_seconds.columns = SECONDS
    sums = faces[PROBS].astype(np.float64)
    sums.columns = SUMS
    keys = ["video_id", "shot", "face_id", "person", "time_s", "duration"]
    per_row = pd.concat([faces[keys], emotion_seconds, sums], axis=1)

    def totals(keys: list[str]) -> pd.DataFrame:
        g = per_row.groupby(keys)
        return pd.concat(
            [g.size().rename("rows"), g.duration.sum().rename("row_seconds"), g[SECONDS + SUMS].sum()], axis=1
        )

    def presence(keys: list[str]) -> pd.DataFrame:
        frames = df.drop_duplicates(["video_id", "frame"])
        with_face = faces.drop_duplicates(["video_id", "frame"])
        out = pd.DataFrame(
            {
                "frames": frames.groupby(keys).frame.count(),
                "seconds": frames.groupby(keys).duration.sum(),
                "face_frames": with_face.groupby(keys).frame.count(),
                "face_seconds": with_face.groupby(keys).duration.sum(),
                "faces": faces.groupby(keys).face_id.nunique(),
            }
        ).join(totals(keys))
        zero = ["face_frames", "face_seconds", "faces", "rows", "row_seconds", *SECONDS]
        return out.fillna(dict.fromkeys(zero, 0)).reset_index().assign(face_id=NO_FACE)

    by_face = totals(["video_id", "face_id"])
    g = per_row.groupby(["video_id", "face_id"])
    by_face = by_face.assign(
        shot=g.shot.first(), person=g.person.first(), first_s=g.time_s.min(), last_s=g.time_s.max()
    ).reset_index()
    span = df.groupby(["video_id", "shot"]).time_s.agg(first_s="min", last_s="max").reset_index()
    shots = presence(["video_id", "shot"]).merge(span, on=["video_id", "shot"])
    out = pd.concat([presence(["video_id"]), shots, by_face], ignore_index=True)[AGGREGATE_SCHEMA.names]
    ints = [f.name for f in AGGREGATE_SCHEMA if pa.types.is_integer(f.type)]
    out[ints] = out[ints].astype("Int64")  # nullable: a face row has no frame count
    # Without pandas' metadata: readers get plain NumPy columns (NaN for null), not pandas' nullable types.
    return pa.Table.from_pandas(out, schema=AGGREGATE_SCHEMA, preserve_index=False).replace_schema_metadata(None)


def _shots(df: pd.DataFrame) -> pd.Series:
    """Each row's shot: rows of timelines written before shots (schema 1-2) are shot 0."""
    return df["shot"].fillna(0).astype(np.int32) if "shot" in df else pd.Series(0, index=df.index, dtype=np.int32)


def _persons(df: pd.DataFrame) -> pd.Series:
    """Each row's person: rows of timelines written before persons (schema 1-3) have none."""
    if "person" not in df:
        return pd.Series(NO_PERSON, index=df.index, dtype=np.int32)
    return df["person"].fillna(NO_PERSON).astype(np.int32)


def summarize(agg: pd.DataFrame, by: str = "video") -> pd.DataFrame:
    """:func:`fer.timelines.summarize`'s table, from aggregates instead of frames."""
    rows = rows_by(agg, by)
    if by in ("face", "person"):
        base = pd.DataFrame(
            {"first_s": rows.first_s, "last_s": rows.last_s, "seconds": rows.row_seconds, "frames": rows.rows}
        ).astype({"frames": int})
        if by == "face":
            base.insert(0, "shot", _shots(rows))
        else:
            base.insert(0, "faces", rows.faces.astype(int))
    else:
        base = rows[["frames", "seconds", "face_frames", "face_seconds", "faces"]].astype(
            {"frames": int, "face_frames": int, "faces": int}
        )
        base.insert(3, "face_share", base.face_frames / base.frames)
        if by == "shot":
            base.insert(0, "first_s", rows.first_s)
            base.insert(1, "last_s", rows.last_s)
    shares = rows[SECONDS].div(rows.row_seconds.replace(0, np.nan), axis=0).fillna(0.0)
    shares.columns = [f"share_{e}" for e in PROBS]
    means = rows[SUMS].div(rows.rows.replace(0, np.nan), axis=0)
    means.columns = [f"mean_{e}" for e in PROBS]
    out = pd.concat([base, shares, means], axis=1)
    has = shares.sum(axis=1) > 0
    out.insert(len(base.columns), "dominant", np.where(has, shares.idxmax(axis=1).str[6:], None))
    return out.sort_index().reset_index()


def check_by(by: str) -> None:
    """Raise a one-line error unless ``by`` is one of :data:`SUMMARY_BY`."""
    if by not in SUMMARY_BY:
        raise FerError(f"--by: choose {', '.join(SUMMARY_BY)}, not {by!r}")


def rows_by(agg: pd.DataFrame, by: str) -> pd.DataFrame:
    """The aggregate rows of videos, shots, faces or persons, indexed by ``video_id`` and
    ``shot``, ``face_id`` or ``person``."""
    check_by(by)
    if by == "face":
        return agg[agg.face_id != NO_FACE].set_index(["video_id", "face_id"])
    if by == "person":
        return _person_rows(agg)
    return _video_rows(agg) if by == "video" else _shot_rows(agg)


def _person_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """Rows per ``(video_id, person)``, summed over the person's faces (tracks); faces without a
    person, and aggregates written before persons, have none."""
    faces = agg[(agg.face_id != NO_FACE) & (agg.person.fillna(NO_PERSON) != NO_PERSON)]
    g = faces.astype({"person": int}).groupby(["video_id", "person"])
    return pd.concat(
        [g[["rows", "row_seconds", *SECONDS, *SUMS]].sum(), g.first_s.min(), g.last_s.max(),
         g.face_id.size().rename("faces")], axis=1,
    )  # fmt: skip


def _video_rows(agg: pd.DataFrame) -> pd.DataFrame:
    return agg[(agg.face_id == NO_FACE) & agg.shot.isna()].set_index("video_id")


def _shot_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """Rows per ``(video_id, shot)``: a video aggregated before shots is one shot, its video row."""
    shots = agg[(agg.face_id == NO_FACE) & agg.shot.notna()]
    old = _video_rows(agg).drop(index=shots.video_id.unique()).reset_index().assign(shot=0)
    rows = pd.concat([shots, old], ignore_index=True)
    return rows.astype({"shot": int}).set_index(["video_id", "shot"])
