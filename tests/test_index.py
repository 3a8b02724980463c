"""The archive index: written as videos finish, mended when stale, compacted, equal to the per-video files."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fer import aggregates, index, timelines
from fer.schema import AGGREGATES_DIR
from fer.storage import Location
from fer.video.pipeline import LabelConfig, run

from .conftest import SAMPLES, fer_cli
from .mp4 import distinct_copy

CLIPS = ("single_face.mp4", "face_noface.mov", "no_face.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def _from_files(out, by: str = "video") -> pd.DataFrame:
    """The archive summary computed from the per-video aggregates alone (the truth)."""
    files = sorted((out / AGGREGATES_DIR).glob("*.parquet"))
    counted = set(timelines.timeline_files(out))
    agg = pd.concat([pq.read_table(io.BytesIO(f.read_bytes())).to_pandas() for f in files if f.stem in counted])
    return aggregates.summarize(agg, by=by).sort_values(list(agg.columns[:1])).reset_index(drop=True)


def _summary(out, by: str = "video") -> pd.DataFrame:
    return timelines.summary(out, by=by).sort_values("video_id").reset_index(drop=True)


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


def test_a_run_writes_its_videos_into_the_index_itself(tmp_path):
    out = tmp_path / "out"
    run(LabelConfig(inputs=tuple(str(SAMPLES / c) for c in CLIPS[:3]), out=str(out), engine="process"))
    assert len(list((out / "index").glob("*.parquet"))) == 1  # one part, nothing left for a query to mend
    assert index.check(Location.parse(str(out))) == (3, [])


@pytest.mark.parametrize("by", ["video", "shot", "face", "person"])
def test_an_index_built_across_killed_runs_agrees_with_the_files(three_runs, by):
    out, killed = three_runs
    assert 3 <= killed < 5  # the kill came before the second run finished
    good, bad = index.check(Location.parse(str(out)))
    assert (good, bad) == (5, []), bad
    pd.testing.assert_frame_equal(_summary(out, by), _from_files(out, by))
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
    clip = tmp_path / "clip.mp4"
    distinct_copy(SAMPLES / "carphone_pristine.mp4", clip, 1)  # another video to fer
    run(LabelConfig(inputs=(str(clip),), out=str(out), engine="process"))
    assert len(_summary(out)) == 6
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process", fps=5.0))
    clip.write_bytes(b"not a video at all" * 100)  # the same path, now broken: its labels must go
    run(LabelConfig(inputs=(str(clip),), out=str(out), engine="process"))
    summary = _summary(out)
    pd.testing.assert_frame_equal(summary, _from_files(out))
    assert len(summary) == 5
    assert summary[summary.video_id.str.startswith("single_face")].frames.item() < 72  # the --fps 5 rows won
    assert index.check(Location.parse(str(out))) == (5, [])


def test_wrong_or_unreadable_index_files_are_found_and_repaired(three_runs, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(three_runs[0], out)
    loc = Location.parse(str(out))
    (out / "index" / "part-9999999999999999999-0-0.parquet").write_bytes(b"cut short")  # sorts last
    pd.testing.assert_frame_equal(_summary(out), _from_files(out))  # left out, with a warning
    (out / "index" / "part-9999999999999999999-0-0.parquet").unlink()
    # A part that claims a video's current entry with other figures (a bug, a hand edit): found, then rebuilt.
    current, _ = index._current(index._read_parts(loc, index._listing(loc).parts, None)[0], index._listing(loc).entries)
    victim = current.column("video_id")[0].as_py()
    bad = current.drop_columns(["file"]).to_pandas()
    bad = pa.Table.from_pandas(bad[bad.video_id == victim].assign(rows=10**6), schema=index.INDEX_SCHEMA,
                               preserve_index=False)  # fmt: skip
    pq.write_table(bad, out / "index" / f"part-{time.time_ns()}-0-0.parquet")
    assert index.check(loc)[1] == [victim]
    result = fer_cli("check", str(out), "--repair")
    assert "rebuilt from their files" in result.stdout, result.stdout
    assert index.check(loc) == (5, [])


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
