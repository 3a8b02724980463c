"""Faults the operating system really raises, and what is on disk after each: a full disk, a
read-only output, an export into a folder that does not exist. Exit statuses: 3 for the
environment, with a one-line reason and a summary of what was saved."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from fer.video import manifest
from tests.conftest import SAMPLES, fer_cli
from tests.mp4 import distinct_copy, faststart, looped, truncated


@contextlib.contextmanager
def mounted(path, options: str):
    """A tmpfs mounted at ``path`` with ``options`` (skip where the test may not mount)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _on_disk(out) -> tuple[set[str], dict[str, str]]:
    """The timeline files and the manifest's statuses of an output."""
    timelines = {p.stem for p in (out / "timelines").glob("*.parquet")}
    return timelines, {vid: e.status for vid, e in manifest.load(out).items()}


def test_a_full_disk_stops_the_run_with_what_was_saved(untrained_bundle, tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    for i in range(8):
        distinct_copy(SAMPLES / "carphone_pristine.mp4", videos / f"clip{i}.mp4", i)
    with mounted(tmp_path / f"small-{uuid.uuid4().hex[:6]}", "size=120k") as disk:
        out = disk / "out"
        proc = fer_cli("label", str(videos), "--out", str(out), "--model", str(untrained_bundle), "--json")
        assert proc.returncode == 3, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: cannot write {out}/") and last.endswith(": No space left on device"), last
        assert "Traceback" not in proc.stderr and "video(s) left; the same command continues the run" in proc.stderr
        result = json.loads(proc.stdout)
        done = {v["video_id"] for v in result["videos"] if v["status"] == "done"}
        left = {v["video_id"] for v in result["videos"] if v["status"] == "interrupted"}
        assert left and len(done) + len(left) == 8
        timelines, statuses = _on_disk(out)
        # Every timeline on disk is a done video of the manifest, and nothing else is.
        assert timelines == done == {vid for vid, status in statuses.items() if status == "done"}
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_read_only_output_is_refused_before_any_work(untrained_bundle, tmp_path):
    out = tmp_path / "out"
    (out / "manifest").mkdir(parents=True)
    with mounted(out / "manifest", "ro,size=64k"):
        proc = fer_cli("label", str(SAMPLES / "single_face.mp4"), "--out", str(out), "--model", str(untrained_bundle))
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines() == [f"error: cannot write to {out}/manifest: Read-only file system"]
        assert _on_disk(out) == (set(), {})


def test_export_makes_the_folder_it_writes_into(tmp_path):
    out = tmp_path / "labels"
    proc = fer_cli("label", str(SAMPLES / "single_face.mp4"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = tmp_path / "new" / "folder" / "timeline.csv"
    proc = fer_cli("export", str(out), "--out", str(target))
    assert proc.returncode == 0 and target.read_text().startswith("video_id,"), proc.stderr
    with mounted(tmp_path / "ro", "ro,size=64k") as ro:
        proc = fer_cli("export", str(out), "--out", str(ro / "t.csv"))
        assert proc.returncode == 3
        assert proc.stderr.strip() == f"error: --out: cannot write {ro / 't.csv'}: Read-only file system"


def test_a_truncated_video_is_partial_not_done(untrained_bundle, tmp_path):
    data = (SAMPLES / "carphone_pristine.mp4").read_bytes()  # 120 frames
    videos = tmp_path / "in"
    videos.mkdir()
    (videos / "whole.mp4").write_bytes(faststart(data))
    (videos / "cut.mp4").write_bytes(truncated(data, 0.5))  # the index states 120 frames, half the data is gone
    out = tmp_path / "out"
    proc = fer_cli("label", str(videos), "--out", str(out), "--model", str(untrained_bundle), "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    result = {v["path"].rsplit("/", 1)[-1]: v for v in json.loads(proc.stdout)["videos"]}
    assert result["whole.mp4"]["status"] == "done" and result["whole.mp4"]["frames"] == 120
    cut = result["cut.mp4"]
    assert cut["status"] == "partial" and 30 < cut["frames"] < 90
    assert (
        cut["reason"]
        == f"{cut['frames']} of the 120 frames the container states could be decoded (truncated or corrupt)"
    )
    assert json.loads(proc.stdout)["totals"]["partial"] == 1
    timelines, statuses = _on_disk(out)
    assert sorted(statuses.values()) == ["done", "partial"] and len(timelines) == 2
    again = fer_cli("label", str(videos), "--out", str(out), "--model", str(untrained_bundle), "--json")
    assert [v["reason"] for v in json.loads(again.stdout)["videos"]] == ["already partial", "already done"]


def _descendants(root: int) -> dict[int, str]:
    """``pid -> command`` of every live descendant of ``root``."""
    from fer._reaper import _descendants as below
    from fer._reaper import _processes

    found = below(root, _processes())
    names = {}
    for pid in found:
        with contextlib.suppress(OSError):
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    return names


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_driver_takes_its_local_ray_with_it(untrained_bundle, tmp_path):
    from tests.test_console import _long_video

    _long_video(tmp_path / "hour.mp4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer.cli", "label", str(tmp_path / "hour.mp4"), "--out", str(tmp_path / "out"),
         "--model", str(untrained_bundle)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline, ray_processes = time.time() + 180, {}
    while time.time() < deadline and not any("DecodeDetect" in c for c in ray_processes.values()):
        time.sleep(1)
        ray_processes = _descendants(proc.pid)
    assert any("ray::" in c for c in ray_processes.values()), ray_processes
    proc.kill()  # SIGKILL: no chance to shut Ray down
    proc.wait()
    time.sleep(10)  # Ray's own agents would linger 60 s
    left = {pid: c for pid, c in ray_processes.items() if _alive(pid)}
    assert not left, left


@pytest.mark.parametrize(
    ("engine", "after_s"),
    [("process", 2.0), ("ray", 2.0), ("ray", 12.0)],  # labelling here; Ray starting; its actors loading
)
def test_ctrl_c_at_start_up_exits_130_without_a_traceback(untrained_bundle, tmp_path, engine, after_s):
    out, clip = tmp_path / "out", tmp_path / "long.mp4"
    looped(SAMPLES / "face_noface.mov", clip, 6)  # ~1,000 frames: a few seconds' work even here
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer.cli", "label", str(clip), "--out", str(out),
         "--model", str(untrained_bundle), "--engine", engine],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr.splitlines() and "Traceback" not in stderr, stderr[-3000:]
    # Nothing half-written: whatever is on disk is a done video with its entry.
    timelines, statuses = _on_disk(out) if out.exists() else (set(), {})
    assert timelines == {vid for vid, status in statuses.items() if status == "done"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # out or not, no temporaries


def _label_with_chaos(clips: Path, out: Path, bundle: Path, chaos: str, *args: str) -> subprocess.CompletedProcess:
    """``fer label`` on Ray with :data:`fer.video.stages.CHAOS_ENV` set to ``chaos``."""
    from fer.video.stages import CHAOS_ENV

    env = {**os.environ, CHAOS_ENV: chaos}
    command = [sys.executable, "-m", "fer.cli", "label", str(clips), "--out", str(out), "--model", str(bundle),
               "--engine", "ray", "--json", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory) -> Path:
    """face_noface.mov (169 frames, chunks of 128 rows: a decoder can die between two) and single_face.mp4."""
    clips = tmp_path_factory.mktemp("clips")
    for name in ("face_noface.mov", "single_face.mp4"):
        shutil.copy(SAMPLES / name, clips / name)
    return clips


def test_a_decoder_killed_mid_segment_is_replayed_and_every_frame_labelled_once(untrained_bundle, two_clips, tmp_path):
    marker = tmp_path / "killed"
    proc = _label_with_chaos(two_clips, tmp_path / "out", untrained_bundle, f"face_noface:{marker}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()  # the decoder did die, after sending its segment's first chunk
    videos = {Path(v["path"]).name: v for v in json.loads(proc.stdout)["videos"]}
    assert {name: (v["status"], v["frames"]) for name, v in videos.items()} == {
        "face_noface.mov": ("done", 169), "single_face.mp4": ("done", 72)
    }  # fmt: skip
    df = pd.read_parquet(videos["face_noface.mov"]["output"])
    assert df.frame.drop_duplicates().tolist() == list(range(169))
    assert not df.duplicated(["frame", "x", "y"]).any()  # no row twice


def test_a_file_that_kills_its_decoder_on_every_try_fails_and_the_run_goes_on(untrained_bundle, two_clips, tmp_path):
    out = tmp_path / "out"
    proc = _label_with_chaos(two_clips, out, untrained_bundle, "face_noface:always")
    assert proc.returncode == 1, proc.stderr[-3000:]
    videos = {Path(v["path"]).name: v for v in json.loads(proc.stdout)["videos"]}
    assert videos["single_face.mp4"]["status"] == "done"
    failed = videos["face_noface.mov"]
    assert failed["status"] == "failed"
    assert failed["reason"].startswith("segment(s) 0 of 1 never finished: the process that decoded or classified")
    timelines, statuses = _on_disk(out)
    assert statuses == {videos["single_face.mp4"]["video_id"]: "done", failed["video_id"]: "failed"}
    assert timelines == {videos["single_face.mp4"]["video_id"]}


def test_one_long_video_on_many_decoders_is_probed_once(untrained_bundle, tmp_path):
    clip = tmp_path / "long.mp4"
    looped(SAMPLES / "face_noface.mov", clip, 3)
    proc = fer_cli("label", str(clip), "--out", str(tmp_path / "out"), "--model", str(untrained_bundle),
                   "--engine", "ray", "--decoders", "4", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log,) = (tmp_path / "out" / "logs").glob("run-*.json")
    record = json.loads(log.read_text())
    assert record["totals"]["probes"] == 1
    (video,) = record["videos"]
    assert video["status"] == "done" and video["frames"] == 3 * 169
    df = pd.read_parquet(video["output"])
    assert df.frame.drop_duplicates().tolist() == list(range(3 * 169))


def test_a_bug_fails_its_videos_saves_the_others_and_exits_70(tmp_path):
    """A network that answers with 8 classes where its bundle names 7 (a broken build, as a
    bug would leave it): the videos it classifies fail with "internal error", the video
    without faces is saved, the summary is printed, and the run then crashes (70), not 1."""
    from fer import bundle
    from fer._tf import keras

    inputs = keras.Input((48, 48, 1))
    broken = keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(keras.layers.Flatten()(inputs)))
    model = bundle.save(broken, tmp_path / "broken", {"name": "broken", "architecture": "small"})
    for lite in model.glob("*.tflite"):
        lite.unlink()  # tf-keras, whose answer is what the network says
    out = tmp_path / "out"
    proc = fer_cli("label", str(SAMPLES / "single_face.mp4"), str(SAMPLES / "no_face.mp4"), "--out", str(out),
                   "--model", str(model), "--runtime", "keras", "--json")  # fmt: skip
    assert proc.returncode == 70, proc.stderr[-3000:]
    videos = {Path(v["path"]).name: v for v in json.loads(proc.stdout)["videos"]}
    assert videos["no_face.mp4"]["status"] == "done"
    assert videos["single_face.mp4"]["status"] == "failed"
    assert videos["single_face.mp4"]["reason"].startswith("internal error classifying: ValueError")
    assert "InternalError: a bug in fer failed 1 video(s)" in proc.stderr
    assert manifest.load(out)[videos["no_face.mp4"]["video_id"]].status == "done"
