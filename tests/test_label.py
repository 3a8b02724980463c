"""`fer label` on the real sample clips: detection, coverage, schema, re-runs, failures."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fer.labels import EMOTIONS
from fer.schema import LANDMARK_COLUMNS, NO_FACE, TIMELINE_SCHEMA, read_metadata
from fer.video import manifest
from fer.video.align import MARGIN, crop_face
from fer.video.faces import DETECTORS, MIN_FACE, create_detector
from fer.video.inputs import video_id
from fer.video.pipeline import InternalError, LabelConfig, run
from fer.video.plan import as_batch, probe_segments
from fer.video.stages import CHUNK_ROWS, DecodeDetect
from tests.conftest import SAMPLES, fer_cli
from tests.mp4 import distinct_copy

CLIPS = ["single_face.mp4", "face_noface.mov", "no_face.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"]


def decoded_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    return n


def frames_with_face(df: pd.DataFrame) -> pd.Series:
    return df.groupby("frame").face_id.max() >= 0


@pytest.fixture(scope="module")
def labelled(ray_local, untrained_bundle, tmp_path_factory):
    """All sample clips on Ray, with 1-second segments so every clip crosses segment boundaries."""
    out = tmp_path_factory.mktemp("labels")
    config = LabelConfig(
        inputs=(str(SAMPLES),), out=str(out), model=str(untrained_bundle), segment_seconds=1.0, engine="ray"
    )
    return out, run(config)


def test_a_short_job_in_this_process_gives_what_ray_gives(labelled, untrained_bundle, tmp_path):
    out, on_ray = labelled
    config = LabelConfig(
        inputs=(str(SAMPLES),), out=str(tmp_path), model=str(untrained_bundle), segment_seconds=1.0, engine="auto"
    )
    here = run(config, progress=None)
    assert sorted((e.video_id, e.status, e.frames, e.faces) for e in here.entries) == sorted(
        (e.video_id, e.status, e.frames, e.faces) for e in on_ray.entries
    )
    for e in on_ray.entries:
        a, b = pd.read_parquet(e.output), pd.read_parquet(tmp_path / "timelines" / f"{e.video_id}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


def test_a_segment_goes_on_in_chunks_and_its_last_says_how_many_rows(tmp_path):
    (seg,) = probe_segments({"path": str(SAMPLES / "face_noface.mov"), "video_id": "v"}, segment_seconds=60.0)
    decoder = DecodeDetect(detector="yunet", min_face=MIN_FACE, sample_fps=None, margin=MARGIN, align=True)
    chunks = list(decoder(as_batch(seg)))
    total = sum(len(c["frame"]) for c in chunks)
    assert len(chunks) == -(-total // CHUNK_ROWS) >= 2  # 169 frames, a row or more each
    assert all((c["seg_rows"] == -1).all() and len(c["frame"]) >= CHUNK_ROWS for c in chunks[:-1])
    assert (chunks[-1]["seg_rows"] == total).all()
    frames = np.unique(np.concatenate([c["frame"] for c in chunks]))
    assert list(frames) == list(range(decoded_frames(SAMPLES / "face_noface.mov")))


def timeline_path(out, vid: str):
    return out / "timelines" / f"{vid}.parquet"


def timeline(out, clip) -> pd.DataFrame:
    return pd.read_parquet(timeline_path(out, video_id(SAMPLES / clip)))


def test_every_clip_is_done_with_full_frame_coverage(labelled):
    out, summary = labelled
    assert summary.count("done") == 5 and summary.count("failed") == 0
    for clip in CLIPS:
        df = timeline(out, clip)
        frames = np.sort(df.frame.unique())
        assert len(frames) == decoded_frames(SAMPLES / clip), clip
        assert (np.diff(df.drop_duplicates("frame").time_s.to_numpy()) > 0).all(), clip


def test_faces_are_found_where_people_are(labelled):
    out, _ = labelled
    for clip in ("single_face.mp4", "carphone_pristine.mp4"):
        assert frames_with_face(timeline(out, clip)).mean() >= 0.9, clip
    assert frames_with_face(timeline(out, "no_face.mp4")).mean() == 0
    # (The cartoon's rabbit has a face, and YuNet finds it: benchmarks/face_recall.py reports it.)
    present = frames_with_face(timeline(out, "face_noface.mov")).to_numpy()
    assert present[:60].mean() >= 0.9 and present[-60:].mean() <= 0.05


def test_rows_are_well_formed(labelled):
    out, _ = labelled
    df = pd.read_parquet(out / "timelines")
    assert list(df.columns) == TIMELINE_SCHEMA.names
    faces = df[df.face_id != NO_FACE]
    probs = faces[list(EMOTIONS)].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (faces.emotion.to_numpy() == np.array(EMOTIONS)[probs.argmax(axis=1)]).all()
    assert np.allclose(faces.confidence, probs.max(axis=1))
    for vid, group in faces.groupby("video_id"):
        meta = read_metadata(pq.read_schema(out / "timelines" / f"{vid}.parquet"))["video"]
        assert (group.x >= 0).all() and (group.y >= 0).all()
        assert (group.x + group.w <= meta["width"] + 1e-3).all() and (group.y + group.h <= meta["height"] + 1e-3).all()
    empty = df[df.face_id == NO_FACE]
    assert empty[["x", "score", *LANDMARK_COLUMNS, *EMOTIONS]].isna().all().all() and empty.emotion.isna().all()
    # YuNet's five landmarks lie inside their face's box, eyes above the mouth, left of right.
    xs, ys = faces[list(LANDMARK_COLUMNS[0::2])].to_numpy(), faces[list(LANDMARK_COLUMNS[1::2])].to_numpy()
    assert np.isfinite(xs).all() and np.isfinite(ys).all()
    assert ((xs >= faces.x.to_numpy()[:, None] - 1) & (xs <= (faces.x + faces.w).to_numpy()[:, None] + 1)).all()
    assert ((ys >= faces.y.to_numpy()[:, None] - 1) & (ys <= (faces.y + faces.h).to_numpy()[:, None] + 1)).all()
    assert (faces.eye_left_x < faces.eye_right_x).all() and (faces.eye_left_y < faces.mouth_left_y).all()


def test_face_ids_are_stable_across_segment_boundaries(labelled):
    out, _ = labelled
    for clip in ("single_face.mp4", "carphone_pristine.mp4"):
        ids = timeline(out, clip).query("face_id >= 0").face_id
        assert ids.nunique() == 1, clip  # one person, 1-second segments: ids survive boundaries


def test_output_reads_with_pyarrow_filters_and_metadata(labelled):
    out, _ = labelled
    vid = video_id(SAMPLES / "single_face.mp4")
    t = pq.read_table(out / "timelines", filters=[("video_id", "=", vid), ("time_s", "<", 1.0)])
    assert 0 < t.num_rows <= 31 and set(t.column("video_id").to_pylist()) == {vid}
    meta = read_metadata(pq.read_schema(timeline_path(out, vid)))
    assert meta["labels"] == list(EMOTIONS) and meta["detector"] == "yunet"
    assert meta["model"]["name"] == "test-small" and meta["video"]["fps"] == 30.0


def test_rerun_skips_and_overwrite_redoes(labelled, untrained_bundle):
    out, _ = labelled
    config = LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), model=str(untrained_bundle))
    again = run(config, progress=None)
    assert [e.status for e in again.entries] == ["skipped"]
    redo = run(LabelConfig(**{**config.__dict__, "overwrite": True}), progress=None)
    assert [e.status for e in redo.entries] == ["done"]


@pytest.mark.parametrize("segment_seconds", [60.0, 0.7])
def test_sampling_rate_keeps_video_timestamps(ray_local, untrained_bundle, tmp_path, segment_seconds):
    config = LabelConfig(
        inputs=(str(SAMPLES / "face_noface.mov"),), out=str(tmp_path), model=str(untrained_bundle), fps=5,
        segment_seconds=segment_seconds,
    )  # fmt: skip
    summary = run(config, progress=None)
    df = pd.read_parquet(summary.entries[0].output).drop_duplicates("frame")
    # 6.4 s of variable frame rate video at 5 frames/s: the first frame of every 0.2 s
    # interval of presentation time, times from the container, across segment cuts too.
    assert (np.floor(df.time_s.to_numpy() * 5 + 1e-9) == np.arange(len(df))).all()
    assert len(df) == 32


EDIT_LISTS = SAMPLES.parent.parent / "tests" / "data" / "edit_lists"


def decoded_times(path) -> list[float]:
    cap = cv2.VideoCapture(str(path))
    times = []
    while cap.grab():
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    return times


@pytest.mark.parametrize("clip", ["looped.mp4", "cut.mp4"])
def test_stream_copied_loops_and_cuts_are_labelled_whole(untrained_bundle, tmp_path, clip):
    """Edit lists discard packets and shift times: every frame OpenCV decodes in order is
    labelled, under its decode-order index and the decoder's time, across segment cuts."""
    config = LabelConfig(
        inputs=(str(EDIT_LISTS / clip),), out=str(tmp_path), model=str(untrained_bundle), segment_seconds=0.5
    )
    entry = run(config, progress=None).entries[0]
    times = decoded_times(EDIT_LISTS / clip)
    assert (entry.status, entry.frames) == ("done", len(times))
    df = pd.read_parquet(entry.output).drop_duplicates("frame")
    assert df.frame.tolist() == list(range(len(times)))
    np.testing.assert_allclose(df.time_s, times, atol=1e-6)


def test_odd_names_never_collide(ray_local, untrained_bundle, tmp_path):
    for i, folder in enumerate(("a", "b ü")):  # two videos of the same odd name
        (tmp_path / folder).mkdir()
        distinct_copy(SAMPLES / "carphone_pristine.mp4", tmp_path / folder / "clip ñ (1).mp4", i)
    summary = run(LabelConfig(inputs=(str(tmp_path),), out=str(tmp_path / "out"), model=str(untrained_bundle)))
    ids = [e.video_id for e in summary.entries]
    assert len(set(ids)) == 2 and all(e.status == "done" for e in summary.entries)
    assert all(i.isascii() and " " not in i for i in ids)


def _write_video(path, frames, fps=10.0, grey=False):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), isColor=not grey)
    for f in frames:
        writer.write(f)
    writer.release()


def test_unusual_videos(ray_local, untrained_bundle, tmp_path):
    cap = cv2.VideoCapture(str(SAMPLES / "single_face.mp4"))
    frame = cap.read()[1]
    _write_video(tmp_path / "one_frame.mp4", [frame])
    _write_video(tmp_path / "grey.mp4", [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)] * 3, grey=True)
    _write_video(tmp_path / "big_4k.mp4", [cv2.resize(frame, (3840, 2160))] * 2)
    summary = run(LabelConfig(inputs=(str(tmp_path),), out=str(tmp_path / "out"), model=str(untrained_bundle)))
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in summary.entries}
    assert {n: e.status for n, e in by_name.items()} == dict.fromkeys(
        ["one_frame.mp4", "grey.mp4", "big_4k.mp4"], "done"
    )
    assert by_name["one_frame.mp4"].frames == 1 and by_name["one_frame.mp4"].faces == 1
    assert by_name["grey.mp4"].faces == 3
    big = pd.read_parquet(by_name["big_4k.mp4"].output)
    assert (big.w > 600).all()  # boxes in original 4K pixels


def test_bad_files_fail_alone_with_reasons(untrained_bundle, tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    shutil.copy(SAMPLES / "single_face.mp4", videos / "good.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    data = (SAMPLES / "face_noface.mov").read_bytes()
    (videos / "truncated.mov").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    proc = fer_cli("label", str(videos), "--out", str(out), "--model", str(untrained_bundle))
    assert proc.returncode == 1, proc.stderr[-2000:]
    entries = {e.path.rsplit("/", 1)[-1]: e for e in manifest.load(out).values()}
    assert entries["good.mp4"].status == "done" and entries["good.mp4"].frames == 72
    assert entries["empty.mp4"].status == "failed" and "empty" in entries["empty.mp4"].reason
    assert entries["noise.mp4"].status == "failed" and entries["noise.mp4"].reason
    assert entries["truncated.mov"].status == "failed"  # its index (moov) is at the end: cut off, unreadable
    assert "failed" in proc.stdout.splitlines()[-1] and "Traceback" not in proc.stderr
    assert not list((out / "timelines").glob(".*tmp"))


def test_missing_input_is_an_error_before_anything_starts(tmp_path):
    proc = fer_cli("label", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: no such file or folder: {tmp_path / 'nope.mp4'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = fer_cli("label", str(empty), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no videos or images found" in proc.stderr


def test_rotation_metadata_is_applied(ray_local, untrained_bundle, tmp_path):
    rotated = SAMPLES.parent / "rotated" / "single_face_rot90.mp4"
    summary = run(LabelConfig(inputs=(str(rotated),), out=str(tmp_path), model=str(untrained_bundle)), progress=None)
    entry = summary.entries[0]
    assert entry.status == "done" and entry.frames == 72
    df = pd.read_parquet(entry.output)
    video = read_metadata(pq.read_schema(entry.output))["video"]
    # Stored sideways (360x640) with a rotation tag: decoded upright, boxes in displayed pixels.
    assert (video["width"], video["height"], video["rotation"]) == (640, 360, 270)
    faces = df[df.face_id >= 0]
    assert frames_with_face(df).mean() >= 0.9
    assert (faces.x + faces.w <= 640 + 1e-3).all() and (faces.y + faces.h <= 360 + 1e-3).all()


@pytest.mark.parametrize("name", DETECTORS.names())
def test_every_detector_finds_the_face(name):
    frame = cv2.VideoCapture(str(SAMPLES / "single_face.mp4")).read()[1]
    found = create_detector(name)(frame)
    assert len(found) == 1
    d = found[0]
    assert 150 < d.x + d.w / 2 < 450 and 50 < d.y + d.h / 2 < 300 and 100 < d.w < 300
    eyes = d.landmarks[:2]
    assert np.isfinite(eyes).all() and eyes[0, 0] < eyes[1, 0]  # every detector gives the eyes
    assert (eyes[:, 0] > d.x).all() and (eyes[:, 0] < d.x + d.w).all()
    assert crop_face(frame, d).shape == (48, 48) and crop_face(frame, d, align=False).shape == (48, 48)
    assert create_detector(name)(np.zeros((360, 640, 3), np.uint8)) == []


def test_a_bug_in_detection_fails_its_video_and_then_the_run(untrained_bundle, tmp_path):
    """The video the bug met is failed, saying where; the run then raises (``fer label`` exits
    70), with the summary of what it saved (tests/test_faults.py: a bug met by one video of two)."""

    def broken(**_) -> object:
        def detect(frame):
            raise ZeroDivisionError("a bug in detection")

        return detect

    DETECTORS.register("broken-for-test", "raises on every frame")(broken)
    clips = (str(SAMPLES / "single_face.mp4"),)
    config = LabelConfig(inputs=clips, out=str(tmp_path), model=str(untrained_bundle), detector="broken-for-test",
                         engine="process")  # fmt: skip
    try:
        with pytest.raises(InternalError, match="a bug in fer failed 1 video") as raised:
            run(config, progress=None)
    finally:
        DETECTORS._entries.pop("broken-for-test")
    (entry,) = raised.value.summary.entries
    assert entry.status == "failed"
    assert entry.reason.startswith("internal error detecting faces at frame 0: ZeroDivisionError: a bug in detection")
    assert not list(tmp_path.glob("timelines/*.parquet"))


def test_the_runtime_is_part_of_the_rerun_key_and_recorded(labelled, untrained_bundle):
    out, _ = labelled
    clip = SAMPLES / "single_face.mp4"
    for runtime, recorded in (("keras", "keras"), ("auto", "litert")):  # auto: LiteRT on CPUs
        config = LabelConfig(inputs=(str(clip),), out=str(out), model=str(untrained_bundle), runtime=runtime)
        assert [e.status for e in run(config, progress=None).entries] == ["done"]  # the other runtime's: redone
        meta = read_metadata(pq.read_schema(timeline_path(out, video_id(clip))))
        assert meta["model"]["runtime"] == recorded
