"""Shots: cuts found where edited footage has them, never within a shot, and no face id across one."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from fer.video import shots
from fer.video.pipeline import LabelConfig, run
from fer.video.track import assign_ids
from tests import cuts
from tests.tiles import read_frames


def signatures(frames) -> np.ndarray:
    return np.stack([shots.signature(f) for f in frames])


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A clip of 10 shots (seed 0) and its cuts."""
    path = tmp_path_factory.mktemp("cuts") / "edited.mp4"
    return path, cuts.build(path, shots=10, seed=0)


@pytest.mark.parametrize("step", [1, 5])
def test_cuts_are_found_at_the_frames_where_they_are(edited, step):
    """Every frame (25 fps), and every 5th (as --fps 5 samples): a cut is found at the first
    sampled frame of each new shot, and nowhere else."""
    path, truth = edited
    frames = read_frames(path, step=step)
    index = np.arange(0, len(frames) * step, step)
    shot = shots.shot_index(signatures(frames), index / 25.0)
    found = index[np.flatnonzero(np.diff(shot)) + 1].tolist()
    assert found == [int(index[np.searchsorted(index, c)]) for c in truth]


def test_a_fast_pan_is_not_a_cut():
    """A camera whipping 160 px a frame over a still changes every frame a lot, and evenly: the
    score passes the absolute threshold but not the ratio to its neighbours'."""
    still = read_frames(cuts.SAMPLES / "bigbuckbunny.mp4", limit=1)[0]
    wide = cv2.resize(still, (3840, 720))
    frames = [wide[:, x : x + 1280] for x in range(0, 2400, 160)]
    score = shots.scores(signatures(frames))
    assert np.nanmedian(score) >= shots.MIN_SCORE  # large enough to be a cut on its own
    assert (shots.shot_index(signatures(frames), np.arange(len(frames)) / 25.0) == 0).all()


def test_no_face_id_crosses_a_cut(untrained_bundle, tmp_path):
    """Labelled in 1-s segments (cuts and segment boundaries fall apart and together): each
    frame's shot is the clip's, and every face id lies in one shot. Without shots the tracker
    gives one id to two people across a cut of this clip, where the next face sits where the
    last one was."""
    path = tmp_path / "edited.mp4"
    truth = cuts.build(path, shots=6, seed=3)
    config = LabelConfig(inputs=(str(path),), out=str(tmp_path / "out"), model=str(untrained_bundle), segment_seconds=1)
    df = pd.read_parquet(run(config, progress=None).entries[0].output)
    frames = df.drop_duplicates("frame")
    assert frames.shot.tolist() == np.searchsorted(truth, frames.frame, side="right").tolist()
    faces = df[df.face_id >= 0]
    assert faces.shot.nunique() == 4 and (faces.groupby("face_id").shot.nunique() == 1).all()
    boxes = np.where((df.face_id >= 0).to_numpy()[:, None], df[["x", "y", "w", "h"]].to_numpy(), np.nan)
    unshot = df.assign(track=assign_ids(df.time_s.to_numpy(), boxes))
    assert (unshot[unshot.track >= 0].groupby("track").shot.nunique() > 1).any()


def test_a_fade_through_black_is_a_cut_where_the_picture_comes_back():
    """Out over 15 frames, 10 black, in over 15: the next shot starts at the first frame that is
    not black (not at a near-black frame whose hue jumps); opening and ending on black are no cuts."""
    woman = read_frames(cuts.SAMPLES / "single_face.mp4", limit=40)
    room = [cv2.resize(f, woman[0].shape[1::-1]) for f in read_frames(cuts.SAMPLES / "no_face.mp4", limit=40)]
    ramp, black = np.linspace(1, 0, 15), [np.zeros_like(woman[0])] * 10
    out, into = cuts.faded(woman[25:], ramp), cuts.faded(room[:15], ramp[::-1])
    frames = black + woman[:25] + out + black + into + room[15:] + black
    sig = signatures(frames)
    dark = shots.black(sig)
    back = 10 + 40 + 10 + int(np.argmin(dark[60:]))  # the fade-in's first frame that is not black
    assert 60 < back < 75
    shot = shots.shot_index(sig, np.arange(len(frames)) / 25.0)
    assert (np.flatnonzero(np.diff(shot)) + 1).tolist() == [back]


def dimmed(frames, seconds: float = 10.0, fps: float = 25.0) -> list[np.ndarray]:
    """``frames`` (cycled) scaled so that their signatures' mean value drifts between 9.5 and
    14.5, on a 1.1-s cycle: dim footage hovering around the black threshold, one shot."""
    n = round(seconds * fps)
    target = 12.0 + 2.5 * np.sin(2 * np.pi * np.arange(n) / (1.1 * fps))
    out = []
    for i in range(n):
        f = frames[i % len(frames)].astype(np.float32)
        value = shots.signature(f.astype(np.uint8)).reshape(-1, 3)[:, 2].mean()
        out.append(np.clip(f * target[i] / value, 0, 255).round().astype(np.uint8))
    return out


@pytest.mark.parametrize("source", ["synthetic", "face"])
def test_dim_footage_drifting_around_black_is_one_shot(source):
    if source == "synthetic":
        gradient = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (180, 1))
        frames = [cv2.merge([gradient, gradient * 0.8, gradient * 0.6]).astype(np.uint8)]
    else:
        frames = read_frames(cuts.SAMPLES / "single_face.mp4", limit=72)
    sig = signatures(dimmed(frames))
    value = sig.reshape(len(sig), -1, 3)[..., 2].mean(axis=1)
    assert value.min() < 10 and value.max() > 14  # it does cross the black threshold, often
    assert len(shots.fades(shots.black(sig))) >= 5  # a threshold alone calls a fade at each crossing
    times = np.arange(len(sig)) / 25.0
    assert (shots.shot_index(sig, times) == 0).all()


def test_hard_cuts_into_and_out_of_a_dim_scene_are_found():
    """A night scene (mean value 10, under the black threshold but no fade: it never goes
    near 0) between two bright ones: both cuts are hard cuts, found where they are."""
    woman = read_frames(cuts.SAMPLES / "single_face.mp4", limit=50)
    room = [cv2.resize(f, woman[0].shape[1::-1]) for f in read_frames(cuts.SAMPLES / "no_face.mp4", limit=50)]
    night = [
        np.clip(f * (10.0 / shots.signature(f).reshape(-1, 3)[:, 2].mean()), 0, 255).astype(np.uint8) for f in room
    ]
    sig = signatures(woman + night + woman[::-1])
    assert shots.black(sig)[50:100].all() and not shots.fade_black(sig, np.arange(150) / 25.0).any()
    shot = shots.shot_index(sig, np.arange(150) / 25.0)
    assert (np.flatnonzero(np.diff(shot)) + 1).tolist() == [50, 100]
