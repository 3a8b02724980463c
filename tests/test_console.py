"""The console as a user meets it: quiet runs with their logs filed, live progress, the run
log, names users know, ``fer --version``, plain help and ``fer render``."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

import fer
from fer.labels import EMOTIONS
from fer.render import BGR
from fer.schema import NO_FACE
from fer.train.config import TrainConfig
from fer.video import manifest
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES, fer_cli
from tests.mp4 import distinct_copy

CLIP = SAMPLES / "single_face.mp4"


@pytest.fixture(scope="module")
def quiet_run(untrained_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("quiet") / "out"
    proc = fer_cli("label", str(CLIP), "--out", str(out), "--model", str(untrained_bundle))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_label_prints_only_progress_and_the_summary(quiet_run):
    out, proc = quiet_run
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["video", "status"] and len(lines) == 3
    assert "single_face.mp4" in lines[1] and "done" in lines[1]
    assert "72 sampled frames" in lines[2]
    progress = proc.stderr.splitlines()
    assert progress and all(line.startswith("sampled frames ") for line in progress), proc.stderr[-2000:]
    assert progress[-1].startswith("sampled frames 72/72") and "videos 1/1 finished, 0 failed" in progress[-1]
    (log,) = (out / "logs").glob("run-*.log")
    filed = log.read_text().splitlines()  # what LiteRT's C++ side printed while the model loaded
    assert any("XNNPACK delegate" in line for line in filed), filed[:5]


def test_run_log_records_the_run(quiet_run):
    out, _ = quiet_run
    (path,) = (out / "logs").glob("run-*.json")
    record = json.loads(path.read_text())
    assert record["command"].startswith("fer label ") and record["settings"]["detector"] == "yunet"
    assert record["versions"]["fer"] == fer.__version__ and record["model"]["name"] == "test-small"
    (video,) = record["videos"]
    assert video["status"] == "done" and video["frames"] == 72 and video["path"] == str(CLIP)
    assert 0 < video["first_rows_s"] <= video["finished_s"] <= record["totals"]["seconds"]
    rates = {"seconds": 0, "startup_s": 0, "frames_per_s": 0, "frames_per_s_after_startup": 0}
    assert record["totals"] | rates == {
        "videos": 1, "done": 1, "partial": 0, "skipped": 0, "failed": 0, "interrupted": 0, "frames": 72, "faces": 72,
        "probes": 1, "rows_dropped": 0, **rates,
    }  # fmt: skip


def test_verbose_shows_the_frameworks_on_stderr_and_keeps_stdout_for_results(untrained_bundle, tmp_path):
    proc = fer_cli("label", str(CLIP), "--out", str(tmp_path), "--model", str(untrained_bundle), "-v", "--json",
                   "--fps", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["totals"]["done"] == 1 and result["videos"][0]["path"] == str(CLIP)
    assert any(not line.startswith("sampled frames ") for line in proc.stderr.splitlines())
    # Progress counts what the totals count: the frames sampled at 5 a second, not the 72 decoded.
    progress = [line for line in proc.stderr.splitlines() if line.startswith("sampled frames ")]
    sampled = result["totals"]["frames"]
    assert sampled < 72 and progress[-1].startswith(f"sampled frames {sampled}/{sampled} "), progress[-3:]
    assert not list((tmp_path / "logs").glob("*.log"))


def test_rates_are_given_only_over_a_second_or_more():
    from fer.storage import Location
    from fer.video.pipeline import LabelSummary

    def rates(seconds, sampled, frames=90):
        summary = LabelSummary(Location.parse("out"), seconds=seconds, sampled=sampled)
        summary.entries.append(manifest.Entry("v", "v.mp4", "done", frames=frames))
        return summary.rates()

    assert rates(0.5, ((0.4, 90), (0.4, 90))) == (None, None)  # a 72-frame clip once read "16909 frames/s"
    # Every frame seen at once, 9 s in: the second after (writing, stopping) is no rate of frames.
    assert rates(10.0, ((9.0, 90), (9.0, 90))) == (9.0, None)
    # Frames seen from 2 s to 6 s (10 of them by 2 s): what came after, over that time.
    assert rates(10.0, ((2.0, 10), (6.0, 90))) == (9.0, 20.0)
    assert rates(10.0, None) == (9.0, None)  # nothing sampled: no start-up either


def _long_video(path, seconds: int = 3600, fps: float = 4.0) -> None:
    """An hour of VGA frames (a face-sized blob drifting over noise): long enough that a run
    cannot finish while the test watches."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for i in range(int(seconds * fps)):
        frame = base.copy()
        cv2.circle(frame, (80 + i % 480, 240), 60, (200, 180, 160), -1)
        writer.write(frame)
    writer.release()


def _watch(master: int, proc, until, deadline_s: float) -> tuple[list[tuple[float, int, int]], str]:
    """Read the terminal until ``until(seen, text)``: every progress reading (time, done, total)."""
    seen, text, tail, deadline = [], "", "", time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None and not until(seen, text):
        if select.select([master], [], [], 0.1)[0]:
            chunk = os.read(master, 65536).decode(errors="replace")
            text += chunk
            tail = (tail + chunk)[-200:]
            seen += [(time.time(), int(d), int(t)) for d, t in re.findall(r"frames (\d+)/(\d+)", tail)]
            tail = tail[-40:]
    return seen, text


def test_progress_moves_every_second_on_a_one_hour_input_and_ctrl_c_says_what_was_saved(untrained_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _long_video(inputs / "hour.mp4")
    for i in range(4):
        distinct_copy(SAMPLES / "face_noface.mov", inputs / f"clip{i}.mov", i)
    out = tmp_path / "out"
    master, slave = pty.openpty()  # progress as a person sees it: a terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer.cli", "label", str(inputs), "--out", str(out), "--model", str(untrained_bundle),
         "--segment-seconds", "3600", "--json"],
        stdout=subprocess.PIPE, stderr=slave, text=True, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    os.close(slave)

    def watched_long_enough(seen, _text) -> bool:
        first = next((t for t, done, _ in seen if done > 0), None)
        return first is not None and time.time() > first + 8 and len(manifest.load(out)) >= 1

    try:
        seen, text = _watch(master, proc, watched_long_enough, 300)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        stdout = proc.communicate(timeout=120)[0]
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer has gone
            while select.select([master], [], [], 0.5)[0]:
                text += os.read(master, 65536).decode(errors="replace")
        os.close(master)
    total = seen[-1][2]
    assert total > 14400, text[-500:]  # the hour's frames and the clips', from probing
    first = next(t for t, done, _ in seen if done > 0)
    for second in range(7):
        window = [done for t, done, _ in seen if first + second <= t < first + second + 1.0]
        before = max((d for t, d, _ in seen if t < first + second), default=0)  # nothing done before the first
        assert window and max(window) > before, (second, seen[-5:])
    assert seen[-1][1] < total  # still going: the run did not simply finish
    assert proc.returncode == 130
    # What was saved and what is left: on stdout, in the run log and the manifest; the same command continues.
    result = json.loads(stdout)
    saved = {e.path for e in manifest.load(out).values() if e.status == "done"}
    assert saved and {v["path"] for v in result["videos"] if v["status"] == "done"} == saved
    left = [v["path"] for v in result["videos"] if v["status"] == "interrupted"]
    assert str(inputs / "hour.mp4") in left and len(saved) + len(left) == 5
    assert f"stopped with {len(left)} video(s) left; the same command continues the run" in text
    (log,) = (out / "logs").glob("run-*.json")
    assert sorted(v["status"] for v in json.loads(log.read_text())["videos"]) == sorted(
        v["status"] for v in result["videos"]
    )


def test_video_options_take_names_users_know(quiet_run, tmp_path):
    out, _ = quiet_run
    for name in ("single_face.mp4", "single_face", "single_f", str(CLIP), os.path.relpath(CLIP)):
        proc = fer_cli("summary", str(out), "--video", name, "--format", "csv")
        assert proc.returncode == 0, (name, proc.stderr)
        table = pd.read_csv(pd.io.common.StringIO(proc.stdout))
        assert list(table.video_path) == [str(CLIP)], name
    for command in (
        ["plot", "--out", str(tmp_path / "p.png")],
        ["export"],
        ["render", "--out", str(tmp_path / "r.mp4")],
    ):
        proc = fer_cli(command[0], str(out), "--video", "single_face.mp4", *command[1:])
        assert proc.returncode == 0, (command, proc.stderr)
    proc = fer_cli("summary", str(out), "--video", "nobody.mp4")
    assert proc.returncode == 2 and f"unknown video 'nobody.mp4' in {out} (videos: {CLIP} (single_face-" in proc.stderr


def test_an_ambiguous_name_lists_the_candidates(ray_local, untrained_bundle, tmp_path):
    for i, folder in enumerate(("a", "b")):  # two different videos, both named clip.mp4
        (tmp_path / folder).mkdir()
        distinct_copy(CLIP, tmp_path / folder / "clip.mp4", i)
    run(LabelConfig(inputs=(str(tmp_path / "a"), str(tmp_path / "b")), out=str(tmp_path / "out"),
                    model=str(untrained_bundle)), progress=None)  # fmt: skip
    proc = fer_cli("summary", str(tmp_path / "out"), "--video", "clip.mp4")
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: video 'clip.mp4' is ambiguous: it matches ")
    assert f"{tmp_path / 'a' / 'clip.mp4'} (clip-" in message and f"{tmp_path / 'b' / 'clip.mp4'} (clip-" in message
    proc = fer_cli("summary", str(tmp_path / "out"), "--video", str(tmp_path / "b"), "--format", "json")
    assert [r["video_path"] for r in json.loads(proc.stdout)] == [str(tmp_path / "b" / "clip.mp4")]


def test_render_draws_each_box_in_its_emotion_colour(quiet_run, tmp_path):
    out, _ = quiet_run
    clip = tmp_path / "check.mp4"
    proc = fer_cli("render", str(out), "--out", str(clip), "--smooth", "0")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(next((out / "timelines").glob("*.parquet")))
    rendered, source = _frames(clip), _frames(CLIP)
    assert len(rendered) == len(source) == 72
    for frame_index, row in df[df.face_id != NO_FACE].set_index("frame").iterrows():
        drawn, original = rendered[frame_index], source[frame_index]
        x, y, w, h = (int(round(v)) for v in (row.x, row.y, row.w, row.h))
        band = drawn[y + h // 2 - 5 : y + h // 2 + 5, x + 1 : x + 2].reshape(-1, 3).astype(int)  # left edge, inside
        colour = np.array(BGR[EMOTIONS.index(row.emotion)])
        assert np.abs(band - colour).max() < 60, (frame_index, band.mean(axis=0), colour)
        inside = (slice(y + h // 3, y + 2 * h // 3), slice(x + w // 3, x + 2 * w // 3))  # the face itself
        assert np.abs(drawn[inside].astype(int) - original[inside].astype(int)).mean() < 12


def _frames(path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    return frames


def test_version_and_help():
    proc = fer_cli("--version")
    assert proc.returncode == 0
    versions = dict(line.split(" ", 1) for line in proc.stdout.replace("default model", "default_model").splitlines())
    assert versions["fer"] == fer.__version__ and len(versions["default_model"]) == 16
    assert {"ray", "tensorflow", "opencv"} <= set(versions)
    for command in ("label", "train", "evaluate", "summary", "render"):
        text = fer_cli(command, "--help").stdout
        assert not re.search(r"<(str|int|float|bool|path|list\[str\])>|\{\w+\}", text), command
    train = " ".join(fer_cli("train", "--help").stdout.replace("│", " ").split())
    assert f"(default: {TrainConfig(data='', out='').epochs};" in train and "[default: 64]" in train
