"""The archive index: written as videos finish, mended when stale, compacted, equal to the per-video files."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fer import aggregates, index, timelines
from fer.schema import AGGREGATES_DIR
from fer.storage import Location
from fer.video.pipeline import LabelConfig, run

from .conftest import SAMPLES, fer_cli

CLIPS = ("single_face.mp4", "face_noface.mov", "no_face.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def _from_files(out) -> pd.DataFrame:
    """The archive summary computed from the per-video aggregates alone (the truth)."""
    files = sorted((out / AGGREGATES_DIR).glob("*.parquet"))
    counted = set(timelines.timeline_files(out))
    agg = pd.concat([pq.read_table(io.BytesIO(f.read_bytes())).to_pandas() for f in files if f.stem in counted])
    return aggregates.summarize(agg).sort_values("video_id").reset_index(drop=True)


def _kill_after_first_entry(out, inputs: list[str]) -> None:
    """Start ``fer label`` (one process) and SIGKILL it once its first video's entry is written."""
    before = len(list((out / "manifest").glob("*.json")))
    cmd = [sys.executable, "-m", "fer.cli", "label", *inputs, "--out", str(out), "--engine", "process"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "manifest").glob("*.json"))) == before:
        time.sleep(0.02)
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """An output labelled by three runs: two videos; three more, the driver killed after the first;
    the same command again."""
    out = tmp_path_factory.mktemp("index") / "out"
    run(LabelConfig(inputs=tuple(str(SAMPLES / c) for c in CLIPS[:2]), out=str(out), engine="process"))
    rest = [str(SAMPLES / c) for c in CLIPS[2:]]
    _kill_after_first_entry(out, rest)
    killed = len(list((out / "manifest").glob("*.json")))
    run(LabelConfig(inputs=tuple(rest), out=str(out), engine="process"))
    return out, killed


def test_an_index_built_across_killed_runs_agrees_with_the_files(three_runs):
    out, killed = three_runs
    assert 3 <= killed < 5  # the kill came before the second run finished
    good, bad = index.check(Location.parse(str(out)))
    assert (good, bad) == (5, []), bad
    summary = timelines.summary(out).sort_values("video_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(summary, _from_files(out))
    result = fer_cli("check", str(out))
    assert result.returncode == 0 and "index: 5 videos, row for row" in result.stdout, result.stdout


def test_a_lost_index_is_rebuilt_by_the_next_query(three_runs, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(three_runs[0], out)
    shutil.rmtree(out / "index")
    assert index.check(Location.parse(str(out)))[1]  # everything is missing now
    pd.testing.assert_frame_equal(
        timelines.summary(out).sort_values("video_id").reset_index(drop=True), _from_files(out)
    )
    assert index.check(Location.parse(str(out))) == (5, [])  # mended by that query


def test_relabelled_and_failed_videos_take_their_newest_rows(three_runs, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(three_runs[0], out)
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process", fps=5.0))
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    run(LabelConfig(inputs=(str(garbage),), out=str(out), engine="process"))
    summary = timelines.summary(out).sort_values("video_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(summary, _from_files(out))
    assert summary[summary.video_id.str.startswith("single_face")].frames.item() < 72  # the --fps 5 rows won
    assert index.check(Location.parse(str(out))) == (5, [])


def test_compaction_merges_the_files_and_changes_no_figure(three_runs, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(three_runs[0], out)
    before = timelines.summary(out)
    assert len(list((out / "index").glob("*.parquet"))) >= 2
    result = fer_cli("check", str(out), "--compact")
    assert result.returncode == 0 and "compacted into one" in result.stdout, result.stdout
    assert len(list((out / "index").glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(timelines.summary(out), before)
    assert index.check(Location.parse(str(out))) == (5, [])
