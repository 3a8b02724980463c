"""Face ids follow one person at every sampling rate; a lone frame counts in summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer import timelines as tl
from fer.video.pipeline import LabelConfig, run
from fer.video.track import assign_ids, max_gap
from tests.conftest import SAMPLES
from tests.test_timelines import write_timeline


def still_face(times: np.ndarray) -> np.ndarray:
    return np.tile([100.0, 80.0, 60.0, 60.0], (len(times), 1))


@pytest.mark.parametrize("fps", [1 / 1.001, 0.5, 0.2])
def test_one_still_face_keeps_one_id_at_low_sampling_rates(fps):
    times = np.arange(20) / fps  # 23.976-fps footage sampled at --fps 1 gives frames 1.001 s apart
    assert set(assign_ids(times, still_face(times))) == {0}


def test_a_face_unseen_for_longer_than_the_gap_comes_back_as_new():
    times = np.arange(0, 6, 0.1)  # 10 frames a second: the gap is its 1-second floor
    boxes = still_face(times)
    boxes[(times > 2) & (times < 3.6)] = np.nan  # gone for 1.6 s
    assert max_gap(times) == 1.0
    ids = assign_ids(times, boxes)
    assert set(ids[times <= 2]) == {0} and set(ids[times >= 3.6]) == {1}


def test_episodes_of_sparse_sampling_run_on(tmp_path):
    rows = [(i, 2.0 * i, 0, "happy") for i in range(6)]  # one face, sampled every 2 s
    write_timeline(tmp_path / "timelines", "sparse", rows)
    episodes = tl.episodes(tl.read(tmp_path))
    assert episodes[["emotion", "start_s", "end_s", "frames"]].values.tolist() == [["happy", 0.0, 12.0, 6]]


def test_a_photo_summarises_to_its_face(tmp_path):
    write_timeline(tmp_path / "timelines", "photo", [(0, 0.0, 0, "happy")])
    summary = tl.summary(tmp_path).set_index("video_id").loc["photo"]
    assert (summary.seconds, summary.face_seconds, summary.dominant) == (1.0, 1.0, "happy")
    assert summary.share_happy == pytest.approx(1.0)


def test_fer_label_at_1_fps_of_ntsc_footage_gives_one_face_id(ray_local, untrained_bundle, tmp_path):
    # carphone: 29.97 frames/s, one person; at --fps 1 its sampled frames are 1.001 s apart.
    config = LabelConfig(inputs=(str(SAMPLES / "carphone_pristine.mp4"),), out=str(tmp_path), fps=1,
                         model=str(untrained_bundle))  # fmt: skip
    df = pd.read_parquet(run(config, progress=None).entries[0].output)
    faces = df[df.face_id >= 0]
    assert len(faces) == 4 and faces.time_s.diff().dropna().gt(1.0).all()
    assert set(faces.face_id) == {0}
