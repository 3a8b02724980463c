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
from fer.schema import AGGREGATE_SCHEMA, AGGREGATES_DIR, NO_FACE, TIMELINES_DIR
from fer.storage import Location

PROBS = list(EMOTIONS)
SECONDS = [f"sec_{e}" for e in EMOTIONS]
SUMS = [f"sum_{e}" for e in EMOTIONS]
SUMMARY_BY = ("video", "face")
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
    df = df.assign(duration=durations(df))
    faces = df[df.face_id != NO_FACE]
    emotion_seconds = pd.get_dummies(faces.emotion).reindex(columns=PROBS, fill_value=0).mul(faces.duration, axis=0)
    emotion_seconds.columns = SECONDS
    sums = faces[PROBS].astype(np.float64)
    sums.columns = SUMS
    per_row = pd.concat([faces[["video_id", "face_id", "time_s", "duration"]], emotion_seconds, sums], axis=1)

    def totals(keys: list[str]) -> pd.DataFrame:
        g = per_row.groupby(keys)
        return pd.concat(
            [g.size().rename("rows"), g.duration.sum().rename("row_seconds"), g[SECONDS + SUMS].sum()], axis=1
        )

    by_face = totals(["video_id", "face_id"])
    by_face["first_s"] = per_row.groupby(["video_id", "face_id"]).time_s.min()
    by_face["last_s"] = per_row.groupby(["video_id", "face_id"]).time_s.max()
    by_face = by_face.reset_index()

    frames = df.drop_duplicates(["video_id", "frame"])
    with_face = faces.drop_duplicates(["video_id", "frame"])
    video = pd.DataFrame(
        {
            "frames": frames.groupby("video_id").frame.count(),
            "seconds": frames.groupby("video_id").duration.sum(),
            "face_frames": with_face.groupby("video_id").frame.count(),
            "face_seconds": with_face.groupby("video_id").duration.sum(),
            "faces": faces.groupby("video_id").face_id.nunique(),
        }
    ).join(totals(["video_id"]))
    video = video.fillna({c: 0 for c in ["face_frames", "face_seconds", "faces", "rows", "row_seconds", *SECONDS]})
    video = video.reset_index().assign(face_id=NO_FACE)
    out = pd.concat([video, by_face], ignore_index=True)[AGGREGATE_SCHEMA.names]
    ints = [f.name for f in AGGREGATE_SCHEMA if pa.types.is_integer(f.type)]
    out[ints] = out[ints].astype("Int64")  # nullable: a face row has no frame count
    # Without pandas' metadata: readers get plain NumPy columns (NaN for null), not pandas' nullable types.
    return pa.Table.from_pandas(out, schema=AGGREGATE_SCHEMA, preserve_index=False).replace_schema_metadata(None)


def summarize(agg: pd.DataFrame, by: str = "video") -> pd.DataFrame:
    """:func:`fer.timelines.summarize`'s table, from aggregates instead of frames."""
    if by not in SUMMARY_BY:
        raise FerError(f"summarize by 'video' or 'face', not {by!r}")
    if by == "video":
        rows = agg[agg.face_id == NO_FACE].set_index("video_id")
        base = rows[["frames", "seconds", "face_frames", "face_seconds", "faces"]].astype(
            {"frames": int, "face_frames": int, "faces": int}
        )
        base.insert(3, "face_share", base.face_frames / base.frames)
    else:
        rows = agg[agg.face_id != NO_FACE].set_index(["video_id", "face_id"])
        base = pd.DataFrame(
            {"first_s": rows.first_s, "last_s": rows.last_s, "seconds": rows.row_seconds, "frames": rows.rows}
        ).astype({"frames": int})
    shares = rows[SECONDS].div(rows.row_seconds.replace(0, np.nan), axis=0).fillna(0.0)
    shares.columns = [f"share_{e}" for e in PROBS]
    means = rows[SUMS].div(rows.rows.replace(0, np.nan), axis=0)
    means.columns = [f"mean_{e}" for e in PROBS]
    out = pd.concat([base, shares, means], axis=1)
    has = shares.sum(axis=1) > 0
    out.insert(len(base.columns), "dominant", np.where(has, shares.idxmax(axis=1).str[6:], None))
    return out.sort_index().reset_index()
