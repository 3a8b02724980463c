"""Timeline queries on hand-made timelines (hand-computed answers) and on `fer label` output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fer import aggregates
from fer import timelines as tl
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.schema import LANDMARK_COLUMNS, NO_FACE, NO_PERSON, SCHEMA_VERSION, TIMELINE_SCHEMA, with_metadata
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES, fer_cli


def one_hot(name: str, p: float = 0.9) -> list[float]:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return [p if e == name else rest for e in EMOTIONS]


def write_timeline(folder, video_id: str, rows: list[tuple], schema_version: int = SCHEMA_VERSION):
    """rows: (frame, time_s, face_id, emotion or None[, shot]). Version 1 files have no landmark
    columns, versions 1-2 no shot column, versions 1-3 no person column."""
    records = []
    for frame, t, face, emotion, *shot in rows:
        probs = one_hot(emotion) if emotion else [np.nan] * len(EMOTIONS)
        box = [10.0, 10.0, 20.0, 20.0] if emotion else [np.nan] * 4
        records.append(
            {"video_id": video_id, "video_path": f"/v/{video_id}.mp4", "frame": frame, "time_s": t,
             "shot": shot[0] if shot else 0, "face_id": face,
             "x": box[0], "y": box[1], "w": box[2], "h": box[3], "score": 0.9 if emotion else np.nan,
             "emotion": emotion, "confidence": max(probs) if emotion else np.nan,
             **dict(zip(EMOTIONS, probs, strict=True))}
        )  # fmt: skip
    table = pa.Table.from_pylist(records, schema=TIMELINE_SCHEMA)
    meta = with_metadata({}).metadata
    if schema_version != SCHEMA_VERSION:
        meta = {b"fer": json.dumps({"schema_version": schema_version}).encode()}
    if schema_version < 4:
        table = table.drop_columns(["person"])
    if schema_version < 3:
        table = table.drop_columns(["shot"])
    if schema_version == 1:
        table = table.drop_columns(list(LANDMARK_COLUMNS))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), folder / f"{video_id}.parquet")


@pytest.fixture
def archive(tmp_path):
    """Video a: 10 frames at 1 fps, face 0 happy for 4 s then sad for 6 s; face 1 angry in
    frames 0-1. Video b: 4 frames, no face."""
    rows = [(i, float(i), 0, "happy" if i < 4 else "sad") for i in range(10)]
    rows += [(0, 0.0, 1, "angry"), (1, 1.0, 1, "angry")]
    write_timeline(tmp_path / "timelines", "a", rows)
    write_timeline(tmp_path / "timelines", "b", [(i, i * 0.5, -1, None) for i in range(4)])
    return tmp_path


def test_read_filters_videos_faces_and_time(archive):
    assert len(tl.read(archive)) == 16
    a = tl.read(archive, videos="a", faces=0, start=2, end=5)
    assert a.frame.tolist() == [2, 3, 4] and set(a.face_id) == {0}
    assert list(tl.read(archive, videos=["b"], columns=["emotion"]).columns) == [
        "video_id",
        "frame",
        "time_s",
        "face_id",
        "emotion",
    ]


def test_summarize_by_video_and_face_hand_computed(archive):
    by_video = tl.summarize(tl.read(archive)).set_index("video_id")
    a, b = by_video.loc["a"], by_video.loc["b"]
    assert (a.frames, a.seconds, a.face_frames, a.face_share, a.faces) == (10, 10.0, 10, 1.0, 2)
    # Face rows weigh 1 s each: happy 4, sad 6, angry 2 of 12 face-seconds.
    assert a.share_happy == pytest.approx(4 / 12) and a.share_sad == pytest.approx(6 / 12)
    assert a.share_angry == pytest.approx(2 / 12) and a.dominant == "sad"
    assert (b.frames, b.face_frames, b.face_share, b.face_seconds, b.faces) == (4, 0, 0.0, 0.0, 0)
    assert pd.isna(b.dominant) and b.share_happy == 0
    by_face = tl.summarize(tl.read(archive, videos="a"), by="face").set_index("face_id")
    assert by_face.loc[0, "seconds"] == 10 and by_face.loc[1, "seconds"] == 2
    assert by_face.loc[1, "dominant"] == "angry" and by_face.loc[0, "share_happy"] == pytest.approx(0.4)


def test_episodes_hand_computed(archive):
    episodes = tl.episodes(tl.read(archive, videos="a"))
    rows = episodes[["face_id", "emotion", "start_s", "end_s", "frames"]].values.tolist()
    assert rows == [[0, "happy", 0.0, 4.0, 4], [0, "sad", 4.0, 10.0, 6], [1, "angry", 0.0, 2.0, 2]]
    assert episodes.mean_prob.round(3).tolist() == [0.9, 0.9, 0.9]
    assert len(tl.episodes(tl.read(archive, videos="a"), min_duration_s=3)) == 2
    srt = tl.to_srt(episodes)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:04,000\nface 0: happy (90%)\n\n2\n00:00:00,000 --> 00:00:02,000")
    assert "00:00:04,000 --> 00:00:10,000\nface 0: sad (90%)" in srt


def test_smooth_ema_and_median_hand_computed(archive):
    df = tl.read(archive, videos="a", faces=0)
    ema = tl.smooth(df, window_s=1.0, method="ema")
    alpha = 1 - np.exp(-1.0)
    # Frame 4 is the first sad frame: happy decays from 0.9 towards the sad row's 1/60.
    low = (1 - 0.9) / 6
    assert ema.loc[4, "happy"] == pytest.approx(0.9 + alpha * (low - 0.9), rel=1e-5)
    assert ema.loc[4, "emotion"] == "sad"  # 0.34 happy against 0.58 sad
    slow = tl.smooth(df, window_s=3.0)  # alpha 0.28: the happy run still dominates frame 4
    assert slow.loc[4, "emotion"] == "happy" and slow.loc[9, "emotion"] == "sad"
    assert np.allclose(ema[list(EMOTIONS)].sum(axis=1), 1)
    med = tl.smooth(df, window_s=3.0, method="median")  # window (t-3, t]: frames t-2..t
    assert med.loc[4, "emotion"] == "happy" and med.loc[5, "emotion"] == "sad"
    with pytest.raises(FerError):
        tl.smooth(df, method="mean")


def test_errors_are_clear(archive, tmp_path):
    with pytest.raises(FerError, match="no such file"):
        tl.read(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerError, match="holds no timelines"):
        tl.read(tmp_path / "empty")
    with pytest.raises(FerError, match="unknown video 'zz'"):
        tl.read(archive, videos="zz")
    with pytest.raises(FerError, match="no rows for face 7"):
        tl.read(archive, videos="a", faces=7)
    write_timeline(tmp_path / "old", "c", [(0, 0.0, 0, "happy")], schema_version=99)
    with pytest.raises(FerError, match="schema version 99"):
        tl.read(tmp_path / "old")
    (tmp_path / "foreign").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "foreign" / "x.parquet")
    with pytest.raises(FerError, match="x.parquet: not a timeline written by fer label"):
        tl.read(tmp_path / "foreign")


def test_files_of_schema_version_1_still_read(tmp_path):
    old = [(0, 0.0, 0, "happy"), (1, 1.0, 0, "happy"), (2, 2.0, 0, "sad")]
    write_timeline(tmp_path / "mixed", "old", old, schema_version=1)
    write_timeline(tmp_path / "mixed", "new", [(0, 0.0, 0, "angry"), (1, 1.0, 0, "angry")])
    df = tl.read(tmp_path / "mixed")
    assert list(df.columns) == TIMELINE_SCHEMA.names and len(df) == 5
    assert df[list(LANDMARK_COLUMNS)].isna().all().all()
    assert df.shot.dtype == np.int32 and (df.shot == 0).all()  # a file from before shots is one shot
    assert df.person.dtype == np.int32 and (df.person == NO_PERSON).all()  # nor persons
    write_timeline(tmp_path / "mixed", "v3", [(0, 0.0, 0, "sad")], schema_version=3)
    scanned = tl.scan(tmp_path / "mixed", columns=["video_id", "shot", "person"])
    assert len(scanned) == 6 and (scanned.person == NO_PERSON).all() and (scanned.shot == 0).all()
    assert tl.summary(tmp_path / "mixed", by="face").video_id.tolist() == ["new", "old", "v3"]
    summary = tl.summarize(df).set_index("video_id")
    assert summary.loc["old", "dominant"] == "happy" and summary.loc["new", "dominant"] == "angry"


@pytest.fixture(scope="module")
def labelled(ray_local, untrained_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("tl")
    clips = (str(SAMPLES / "face_noface.mov"), str(SAMPLES / "no_face.mp4"))
    run(LabelConfig(inputs=clips, out=str(out), model=str(untrained_bundle)), progress=None)
    return out


def test_cli_on_labelled_clips(labelled, tmp_path):
    table = fer_cli("summary", str(labelled))
    assert table.returncode == 0, table.stderr
    assert "face_share" in table.stdout.splitlines()[0] and len(table.stdout.splitlines()) == 3
    records = json.loads(fer_cli("summary", str(labelled), "--by", "face", "--format", "json").stdout)
    assert records and all(r["seconds"] > 0 for r in records)
    video = next(r["video_id"] for r in records if r["video_id"].startswith("face_noface"))
    png = tmp_path / "plot.png"
    proc = fer_cli("plot", str(labelled), "--video", video, "--out", str(png), "--smooth", "0.5")
    assert proc.returncode == 0, proc.stderr
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[1] == 1000 and image.shape[0] >= 300 and image.std() > 0.05
    srt = fer_cli("export", str(labelled), "--video", video, "--format", "srt", "--min-duration", "0").stdout
    assert srt.startswith("1\n00:00:00,000 --> ")
    csv = tmp_path / "t.csv"
    assert fer_cli("export", str(labelled), "--video", video, "--out", str(csv)).returncode == 0
    assert len(pd.read_csv(csv)) >= 169
    proc = fer_cli("plot", str(labelled), "--out", str(png))
    assert proc.returncode == 2 and "choose one with --video" in proc.stderr


def test_summaries_by_shot(tmp_path):
    """Video a: shot 0 is face 0 happy for 5 s, shot 1 face 1 sad for 3 s then no face for 2 s;
    video b is a file from before shots (schema 2): one shot, the whole video."""
    rows = [(i, float(i), 0, "happy", 0) for i in range(5)] + [(i, float(i), 1, "sad", 1) for i in range(5, 8)]
    write_timeline(tmp_path / "timelines", "a", rows + [(i, float(i), -1, None, 1) for i in range(8, 10)])
    write_timeline(tmp_path / "timelines", "b", [(i, float(i), 0, "angry") for i in range(3)], schema_version=2)
    old = aggregates.aggregate(tl.read(tmp_path, videos="b")).to_pandas()  # b's aggregates as fer v2 wrote them
    old = old[old.shot.isna() | (old.face_id != NO_FACE)].drop(columns="shot")
    (tmp_path / "aggregates").mkdir()
    old.to_parquet(tmp_path / "aggregates" / "b.parquet", index=False)
    shots = tl.summary(tmp_path, by="shot")
    assert shots[["video_id", "shot", "frames", "seconds", "face_seconds"]].values.tolist() == [
        ["a", 0, 5, 5.0, 5.0], ["a", 1, 5, 5.0, 3.0], ["b", 0, 3, 3.0, 3.0]
    ]  # fmt: skip
    assert shots.dominant.tolist() == ["happy", "sad", "angry"]
    # Shots' times are in the aggregates from schema 3 on (b's old ones lack them; its timeline has them).
    assert shots.first_s.tolist()[:2] == [0.0, 5.0] and shots.last_s.tolist()[:2] == [4.0, 9.0]
    assert shots.first_s.isna().tolist() == [False, False, True]
    pd.testing.assert_frame_equal(
        shots.fillna({"first_s": 0.0, "last_s": 2.0}), tl.summarize(tl.read(tmp_path), by="shot"), check_dtype=False
    )
    assert tl.summary(tmp_path, by="face")[["video_id", "face_id", "shot"]].values.tolist() == [
        ["a", 0, 0], ["a", 1, 1], ["b", 0, 0]
    ]  # fmt: skip
    minutes = tl.emotion_minutes(tmp_path, by="shot")
    assert minutes[["video_id", "shot"]].values.tolist() == [["a", 0], ["a", 1], ["b", 0]]
    assert np.allclose(minutes.happy, [5 / 60, 0, 0]) and np.allclose(minutes.sad, [0, 3 / 60, 0])
    assert len(tl.emotion_minutes(tmp_path)) == 2  # by video: shot rows are not videos


def test_query_reads_outputs_of_schema_version_1_alone(tmp_path):
    write_timeline(tmp_path / "timelines", "old", [(0, 0.0, 0, "happy"), (1, 1.0, 0, "sad")], schema_version=1)
    rows = tl.scan(tmp_path, "emotion = 'sad'", columns=["frame", "eye_left_x", "shot"])
    assert rows.frame.tolist() == [1] and rows.eye_left_x.isna().all() and rows.shot.tolist() == [0]
    proc = fer_cli("query", str(tmp_path), "--where", "eye_left_x IS NULL", "--columns", "frame", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["frame", "0", "1"]
