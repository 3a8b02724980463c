"""The format matrix (tests/formats.py): every frame FFmpeg decodes of each file labelled once,
the right one, with the right status; a file without a video stream says so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer.video import manifest
from fer.video.decode import NO_VIDEO, iter_frames, probe, segments
from fer.video.inputs import video_id
from fer.video.pipeline import LabelConfig, run
from tests import formats
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """The matrix built from the 72-frame sample (one face in every frame), and what FFmpeg decodes of each."""
    folder = tmp_path_factory.mktemp("formats")
    return folder, formats.build(folder, SAMPLES / "single_face.mp4")


def test_every_format_is_labelled_whole_and_once(matrix, untrained_bundle, tmp_path):
    folder, decoded = matrix
    # Segments of 0.5 s: each file is also sought into, where its container allows it.
    config = LabelConfig(inputs=(str(folder),), out=str(tmp_path), model=str(untrained_bundle), segment_seconds=0.5,
                         engine="process")  # fmt: skip
    summary = run(config, progress=None)
    entries = {e.path.rsplit("/", 1)[-1]: e for e in summary.entries}
    assert sorted(entries) == sorted(decoded)
    df = pd.read_parquet(tmp_path / "timelines")
    for case in formats.CASES:
        entry = entries[case.name]
        if not case.video:
            assert (entry.status, entry.reason) == (manifest.FAILED, NO_VIDEO), case.name
            continue
        rows = df[df.video_id == entry.video_id]
        assert (entry.status, entry.frames, entry.reason) == (manifest.DONE, decoded[case.name], ""), case.name
        assert rows.frame.tolist() == list(range(decoded[case.name])), case.name  # each frame once, in order
        assert (rows.face_id >= 0).all(), case.name  # the face is in every frame: no frame is a broken one
        assert rows.time_s.is_monotonic_increasing and rows.time_s.iloc[0] == 0.0, case.name


@pytest.mark.parametrize("seconds", [0.5, 71 / 30])  # 71 frames: a last segment of 1 frame, were it not joined
@pytest.mark.parametrize("name", [c.name for c in formats.CASES if c.video])
def test_frame_i_is_the_frame_ffmpeg_decodes_i_th(matrix, name, seconds):
    """Frame i, decoded in segments (sought into) as a decoder does, is the i-th frame FFmpeg
    decodes (PyAV), and has the i-th presentation time."""
    folder, _ = matrix
    path = str(folder / name)
    info, times = probe(path, video_id(path))
    got = {i: (t, f) for s in segments(info, times, seconds) for i, t, f in iter_frames(s, threads=1)}
    reference = formats.reference_frames(folder / name)
    assert sorted(got) == list(range(len(reference))), name
    for i, (bgr, t_ref) in enumerate(reference):
        t, frame = got[i]
        assert np.abs(frame.astype(np.int16) - bgr).mean() < 3.0, (name, i)
        if t_ref is not None:
            assert abs(t - t_ref) < 0.002, (name, i, t, t_ref)
