"""Archive-scale queries: aggregates written at label time, summaries from them, scans."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest

from fer import timelines as tl
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.schema import AGGREGATES_DIR
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES, fer_cli

CLIPS = ("face_noface.mov", "single_face.mp4", "no_face.mp4")


@pytest.fixture(scope="module")
def labelled(ray_local, untrained_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("query")
    run(LabelConfig(inputs=tuple(str(SAMPLES / c) for c in CLIPS), out=str(out), model=str(untrained_bundle)))
    return out


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, rtol=1e-6)


def test_label_writes_aggregates_that_summarise_like_the_frames(labelled):
    assert len(list((labelled / AGGREGATES_DIR).glob("*.parquet"))) == len(CLIPS)
    frames = tl.read(labelled)
    for by in ("video", "face"):
        same(tl.summary(labelled, by=by), tl.summarize(frames, by=by))
    some = sorted(tl.timeline_files(labelled))[:2]
    same(tl.summary(labelled, videos=some), tl.summarize(tl.read(labelled, videos=some)))
    no_face = tl.summary(labelled).set_index("video_id").filter(like="no_face", axis=0).iloc[0]
    assert no_face.face_frames == 0 and pd.isna(no_face.dominant) and no_face.frames == 95


def test_outputs_without_aggregates_get_them_on_first_use(labelled, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(labelled / "timelines", old / "timelines")
    assert not (old / AGGREGATES_DIR).exists()
    same(tl.summary(old, by="face"), tl.summarize(tl.read(old), by="face"))
    assert len(list((old / AGGREGATES_DIR).glob("*.parquet"))) == len(CLIPS)  # stored for next time


def test_aggregates_on_the_cluster(labelled, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(labelled / "timelines", old / "timelines")
    same(tl.summary(old, address="auto"), tl.summarize(tl.read(old)))
    where = "face_id >= 0 AND time_s < 1.5"
    got = tl.scan(old, where, address="auto")
    assert len(got) > 0
    same(got, tl.scan(old, where))


def test_scan_returns_what_the_condition_selects(labelled):
    frames = tl.read(labelled)
    top = frames.emotion.value_counts().index[0]
    got = tl.scan(labelled, f"emotion = '{top}' AND time_s >= 1.0")
    want = frames[(frames.emotion == top) & (frames.time_s >= 1.0)]
    assert len(want) > 0
    same(got, want)
    cols = tl.scan(labelled, "face_id = -1", columns=["video_id", "time_s"], limit=5)
    assert list(cols.columns) == ["video_id", "time_s"] and len(cols) == 5
    with pytest.raises(FerError, match="--where 'emotin = 1': .*emotin"):
        tl.scan(labelled, "emotin = 1")
    with pytest.raises(FerError, match="--columns: unknown column 'nope'"):
        tl.scan(labelled, columns=["nope"])


def test_top_videos_and_minutes(labelled):
    table = tl.summary(labelled)
    top = tl.top_videos(labelled, "neutral", n=2)
    assert len(top) == 2 and list(top.video_id) == list(
        table.sort_values("share_neutral", ascending=False).video_id[:2]
    )
    minutes = tl.emotion_minutes(labelled).set_index("video_id")
    faces = tl.summarize(tl.read(labelled), by="face").groupby("video_id")
    for vid, group in faces:
        for e in EMOTIONS:
            assert minutes.loc[vid, e] * 60 == pytest.approx((group[f"share_{e}"] * group.seconds).sum(), abs=1e-6)
    with pytest.raises(FerError, match="--emotion: unknown emotion 'joy'"):
        tl.top_videos(labelled, "joy")


def test_query_cli(labelled, tmp_path):
    proc = fer_cli("query", str(labelled), "--where", "face_id >= 0", "--columns", "video_id,frame", "--format", "csv")
    assert proc.returncode == 0, proc.stderr[-1500:]
    rows = proc.stdout.strip().splitlines()
    assert rows[0] == "video_id,frame" and len(rows) - 1 == int((tl.read(labelled).face_id >= 0).sum())
    proc = fer_cli("query", str(labelled), "--top-videos", "1", "--emotion", "happy", "--format", "json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 1
    out = tmp_path / "minutes.parquet"
    proc = fer_cli("query", str(labelled), "--minutes", "--by", "face", "--format", "parquet", "--out", str(out))
    assert proc.returncode == 0 and list(pd.read_parquet(out).columns) == ["video_id", "face_id", *EMOTIONS]
    proc = fer_cli("query", str(labelled), "--where", "confidence >")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --where 'confidence >'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_library_call_refuses_another_cluster_than_its_connection(ray_local):
    from fer._ray import connect

    assert connect(ray_local.get_runtime_context().gcs_address) is False  # the one it has: kept
    with pytest.raises(FerError, match=r"^--address 127\.0\.0\.1:1: this process is already connected to the Ray at "):
        connect("127.0.0.1:1")


def test_a_program_that_imports_fer_gets_no_watcher_of_its_children(ray_local):
    import os
    from pathlib import Path

    watchers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fer._reaper" in args and str(os.getpid()).encode() in args:
            watchers.append(args)
    assert watchers == []  # the CLI's own processes get one (tests/test_faults.py)


def test_a_video_without_faces_has_dominant_none_in_the_summary_table(labelled):
    proc = fer_cli("summary", str(labelled), "--video", "no_face.mp4")
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert row.split()[header.split().index("dominant")] == "none"
    csv = fer_cli("summary", str(labelled), "--video", "no_face.mp4", "--format", "csv").stdout
    assert pd.read_csv(io.StringIO(csv)).dominant.isna().all()  # data stays missing, not a word


def test_an_unquoted_emotion_in_where_gets_a_quoting_hint(labelled):
    proc = fer_cli("query", str(labelled), "--where", "emotion = happy")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: --where 'emotion = happy': Conversion Error")  # named before a file is read
    assert line.endswith("(to compare with the word, quote it: emotion = 'happy')")
