"""The manifest is the source of truth: videos are known by their content, a moved archive is
recognised as done, a replaced file's old labels go, readers count only what the manifest
vouches for, and ``fer check`` finds and repairs what a crash left."""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd

from fer import timelines
from fer.check import check
from fer.video import manifest
from fer.video.inputs import content_id, video_id
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES, fer_cli
from tests.mp4 import distinct_copy


def _label(inputs, out, bundle):
    return run(LabelConfig(inputs=tuple(map(str, inputs)), out=str(out), model=str(bundle)), progress=None)


def test_a_moved_and_renamed_archive_is_recognised_as_done(ray_local, untrained_bundle, tmp_path):
    archive = tmp_path / "a"
    archive.mkdir()
    shutil.copy(SAMPLES / "single_face.mp4", archive / "one.mp4")
    shutil.copy(SAMPLES / "no_face.mp4", archive / "two.mp4")
    out = tmp_path / "out"
    first = _label([archive], out, untrained_bundle)
    assert [e.status for e in first.entries] == ["done", "done"]
    moved = tmp_path / "b"
    archive.rename(moved)
    (moved / "one.mp4").rename(moved / "renamed.mp4")
    again = _label([moved], out, untrained_bundle)
    assert sorted(e.status for e in again.entries) == ["skipped", "skipped"]
    # The same two videos, now recorded under their new paths; nothing was labelled twice.
    assert sorted(e.path for e in manifest.load(out).values()) == [str(moved / "renamed.mp4"), str(moved / "two.mp4")]
    table = timelines.with_paths(timelines.summary(out), out)
    assert len(table) == 2 and set(table.video_path) == {str(moved / "renamed.mp4"), str(moved / "two.mp4")}


def test_one_file_under_two_paths_is_labelled_once(ray_local, untrained_bundle, tmp_path):
    shutil.copy(SAMPLES / "single_face.mp4", tmp_path / "copy.mp4")
    summary = _label([SAMPLES / "single_face.mp4", tmp_path / "copy.mp4"], tmp_path / "out", untrained_bundle)
    by_path = {e.path: e for e in summary.entries}
    assert by_path[str(SAMPLES / "single_face.mp4")].status == "done"
    copy = by_path[str(tmp_path / "copy.mp4")]
    assert copy.status == "skipped" and copy.reason == f"the same file as {SAMPLES / 'single_face.mp4'}"
    assert video_id(tmp_path / "copy.mp4") != video_id(SAMPLES / "single_face.mp4")  # ids keep the name...
    assert content_id(tmp_path / "copy.mp4") == content_id(SAMPLES / "single_face.mp4")  # ...identity the content


def test_a_replaced_file_that_fails_takes_its_old_labels_with_it(ray_local, untrained_bundle, tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    shutil.copy(SAMPLES / "single_face.mp4", videos / "keep.mp4")
    distinct_copy(SAMPLES / "carphone_pristine.mp4", videos / "clip.mp4", 0)
    out = tmp_path / "out"
    old_id = video_id(videos / "clip.mp4")
    _label([videos], out, untrained_bundle)
    (videos / "clip.mp4").write_bytes(b"not a video any more" * 100)  # the file at that path was replaced
    proc = fer_cli("label", str(videos), "--out", str(out), "--model", str(untrained_bundle), "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    result = {v["path"].rsplit("/", 1)[-1]: v["status"] for v in json.loads(proc.stdout)["videos"]}
    assert result == {"keep.mp4": "skipped", "clip.mp4": "failed"}
    entries = manifest.load(out)
    assert old_id not in entries and not (out / "timelines" / f"{old_id}.parquet").exists()
    assert {e.status for e in entries.values()} == {"done", "failed"}
    table = timelines.summary(out)  # only what the manifest vouches for
    assert list(table.video_id) == [video_id(videos / "keep.mp4")]


def test_a_file_moved_away_from_a_path_that_now_holds_another_keeps_its_labels(ray_local, untrained_bundle, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(SAMPLES / "single_face.mp4", a / "clip.mp4")
    out = tmp_path / "out"
    _label([a], out, untrained_bundle)
    (a / "clip.mp4").rename(b / "clip.mp4")  # moved, and another file takes its place
    distinct_copy(SAMPLES / "carphone_pristine.mp4", a / "clip.mp4", 0)
    again = _label([a, b], out, untrained_bundle)
    assert sorted((e.path, e.status) for e in again.entries) == [(str(a / "clip.mp4"), "done"),
                                                                 (str(b / "clip.mp4"), "skipped")]  # fmt: skip
    entries = manifest.load(out)
    assert sorted(e.path for e in entries.values()) == [str(a / "clip.mp4"), str(b / "clip.mp4")]
    assert all((out / "timelines" / f"{vid}.parquet").exists() for vid in entries)


def test_readers_ignore_what_a_crash_left_and_fer_check_repairs_it(ray_local, untrained_bundle, tmp_path):
    out = tmp_path / "out"
    _label([SAMPLES / "single_face.mp4"], out, untrained_bundle)
    (vid,) = manifest.load(out)
    # A crash between the timeline write and the manifest entry: a file with no entry...
    orphan = out / "timelines" / "ghost-0123456789.parquet"
    shutil.copy(out / "timelines" / f"{vid}.parquet", orphan)
    # ...and the temporary of an interrupted atomic write.
    temporary = out / "timelines" / f".{vid}.parquet.123.tmp"
    temporary.write_bytes(b"partial")
    # Just written, they may be a running job's writes in progress: reported, left alone.
    proc = fer_cli("check", str(out), "--repair")
    assert proc.stdout.count("maybe by a running fer label; left alone") == 2 and orphan.exists() and temporary.exists()
    an_hour_ago = time.time() - 3600
    for f in (orphan, temporary):
        os.utime(f, (an_hour_ago, an_hour_ago))
    assert list(timelines.read(out).video_id.unique()) == [vid]
    assert fer_cli("summary", str(out)).stdout.count("\n") == 2  # header and the one video
    proc = fer_cli("check", str(out))
    assert proc.returncode == 1
    assert f"orphan (no manifest entry counts it), found: {orphan}" in proc.stdout
    assert "temporary file of an interrupted write, found:" in proc.stdout
    proc = fer_cli("check", str(out), "--repair")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1].endswith("timelines and manifest agree now")
    assert not orphan.exists() and sorted(p.name for p in (out / "timelines").iterdir()) == [f"{vid}.parquet"]
    # A done video whose timeline was lost: its entry is dropped, so a re-run redoes it.
    (out / "timelines" / f"{vid}.parquet").unlink()
    report = check(out, repair=True)
    assert report.missing == [vid] and manifest.load(out) == {}
    assert [e.status for e in _label([SAMPLES / "single_face.mp4"], out, untrained_bundle).entries] == ["done"]
    assert check(out).consistent and len(pd.read_parquet(out / "timelines")) == 72


def test_an_unreadable_entry_is_named_not_passed_over_silently(tmp_path, capsys):
    entry = manifest.Entry("clip-0123456789", "/v/clip.mp4", "done", "")
    (tmp_path / manifest.MANIFEST_DIR).mkdir()
    manifest.record(manifest.Location.parse(str(tmp_path)), entry)
    broken = tmp_path / manifest.MANIFEST_DIR / "other-0123456789.json"
    broken.write_text("{not json")
    assert list(manifest.load(str(tmp_path))) == ["clip-0123456789"]
    err = capsys.readouterr().err
    assert f"warning: {broken}: not a readable manifest entry" in err and "counts as not labelled" in err
