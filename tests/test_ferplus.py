"""FER+ as a dataset fer reads: votes to targets, the layout through every command, its scores."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fer.data import ferplus
from fer.evaluate import score_votes
from fer.labels import EMOTIONS, label_index

from .conftest import FERPLUS_COLUMNS, fer_cli, synthetic_faces

# In the fixture (tests/conftest.py), per split: 16 faces of each class but disgust (4), then
# a mostly-NF face and a face without a majority; every fourth face's FER-2013 label is sad.
NAMED, KEPT, WITH_MAJORITY = 102, 101, 100
AGREED = 100 - (25 - 4)  # faces 3, 7, ... 99 disagree, but for the four inside the sad block (52-67)


def raw_votes(**counts: int) -> np.ndarray:
    return np.array([[counts.get(c, 0) for c in FERPLUS_COLUMNS]], np.float64)


def test_votes_become_targets_as_the_module_documents():
    rows = np.concatenate([
        raw_votes(happiness=6, neutral=3, fear=1),  # the single fear vote is an outlier
        raw_votes(anger=4, sadness=4, contempt=2),  # kept (8 of 10 on ours), no majority
        raw_votes(NF=6, neutral=4),  # mostly not a face: left out
        raw_votes(contempt=6, disgust=4),  # mostly contempt: left out
        raw_votes(surprise=5, fear=5),  # a tie: kept, no majority (5 is not more than half)
    ])  # fmt: skip
    votes, kept, majority = ferplus.vote_targets(rows)
    happy, neutral, angry, sad = (label_index(n) for n in ("happy", "neutral", "angry", "sad"))
    np.testing.assert_allclose(votes[0][[happy, neutral]], [6 / 9, 3 / 9])
    assert votes[0].sum() == pytest.approx(1) and votes[0][label_index("fear")] == 0
    np.testing.assert_allclose(votes[1][[angry, sad]], [0.5, 0.5])
    assert kept.tolist() == [True, True, False, False, True]
    assert majority.tolist() == [happy, -1, -1, -1, -1]
    assert not votes[2].any() and not votes[3].any()


def test_targets_of_each_mode(tiny_ferplus):
    rows = ferplus.read_votes(tiny_ferplus)
    rows = rows[rows["split"] == "FER2013Valid"].reset_index(drop=True)
    angry, sad, neutral = label_index("angry"), label_index("sad"), label_index("neutral")
    for mode, faces in (("votes", KEPT), ("majority", WITH_MAJORITY), ("fer2013", KEPT), ("both", KEPT)):
        target, has = ferplus.targets(rows, mode)
        assert has.sum() == faces, mode
        np.testing.assert_allclose(target[has].sum(axis=1), 1, rtol=1e-6)
    votes, _ = ferplus.targets(rows, "votes")
    np.testing.assert_allclose(votes[0][[angry, neutral]], [7 / 9, 2 / 9], rtol=1e-6)
    both, _ = ferplus.targets(rows, "both")  # face 3: an angry face that FER-2013 calls sad
    np.testing.assert_allclose(both[3][[angry, neutral, sad]], [7 / 18, 1 / 9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(both[0][[angry, neutral]], [8 / 9, 1 / 9], rtol=1e-6)  # agreed: sharper
    np.testing.assert_array_equal(ferplus.targets(rows, "mix:0.5")[0], both)
    quarter, has = ferplus.targets(rows, "mix:0.25")  # a quarter the votes, three quarters FER-2013's label
    assert has.sum() == KEPT
    np.testing.assert_allclose(quarter[3][[angry, neutral, sad]], [7 / 36, 1 / 18, 0.75], rtol=1e-6)
    np.testing.assert_array_equal(ferplus.targets(rows, "mix:1")[0][has], votes[has])


def test_read_split_keeps_the_columns_evaluation_needs(ray_local, tiny_ferplus):
    from fer.data.fer2013 import to_columns

    faces = ferplus.read_split(tiny_ferplus, "val", targets_mode="votes")
    columns = to_columns(faces.dataset)
    assert len(columns["image"]) == KEPT and columns["image"].shape[1:] == (48, 48)
    assert (columns["majority"] >= 0).sum() == WITH_MAJORITY
    assert faces.counts[label_index("angry")] == 17  # 16 faces and the angry/sad tie (arg-max: first)
    np.testing.assert_array_equal(columns["label"], columns["target"].argmax(axis=1))
    first = cv2.imread(str(tiny_ferplus / "FER2013Valid" / "fer0000000.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(columns["image"][0], first)


def test_score_votes_counts_each_figure_on_its_own_faces():
    n = 4
    votes = np.zeros((n, 7), np.float32)
    votes[[0, 1, 2, 3], [0, 3, 4, 4]] = 1.0
    columns = {
        "votes": votes,
        "majority": np.array([0, 3, 4, -1]),
        "fer2013": np.array([0, 4, -1, 4]),
    }
    probs = np.full((n, 7), 0.05)
    probs[[0, 1, 2, 3], [0, 4, 4, 4]] = 0.7  # right, wrong (says sad), right, no majority to be right about
    scores = score_votes(probs, columns)
    assert (scores.faces, sum(scores.majority.support), scores.majority.accuracy) == (4, 3, pytest.approx(2 / 3))
    assert (sum(scores.agreed.support), scores.agreed.accuracy) == (1, 1.0)  # only face 0 agrees
    assert (sum(scores.fer2013.support), scores.fer2013.accuracy) == (3, 1.0)
    assert scores.cross_entropy == pytest.approx(-(3 * np.log(0.7) + np.log(0.05)) / 4)


def test_data_stats_reads_the_ferplus_layout(tiny_ferplus):
    proc = fer_cli("data", "stats", str(tiny_ferplus))
    assert proc.returncode == 0, proc.stderr
    counts, summary = (line.split() for line in proc.stdout.splitlines() if line.startswith("val "))
    assert counts[:9] == ["val", "101", "17", "4", "16", "16", "16", "16", "16"]
    assert summary == ["val", str(NAMED), str(KEPT), str(WITH_MAJORITY), str(NAMED), str(AGREED)]


def test_train_evaluate_and_calibrate_on_the_ferplus_layout(ray_local, tiny_ferplus, tmp_path):
    run_dir = tmp_path / "run"
    options = ["--targets", "votes", "--arch", "small", "--epochs", "1", "--batch-size", "32"]
    train = fer_cli("train", "--data", str(tiny_ferplus), "--out", str(run_dir), *options, "--degrade", "0.5")
    assert train.returncode == 0, train.stderr[-3000:]
    assert f"{KEPT} images from {tiny_ferplus}/FER2013Train (targets votes)" in train.stderr
    assert f"{WITH_MAJORITY} images from {tiny_ferplus}/FER2013Valid (targets majority)" in train.stderr
    config = json.loads((run_dir / "model" / "model.json").read_text())["training"]["config"]
    assert (config["targets"], config["augment"]["degrade"]) == ("votes", 0.5)

    evaluate = fer_cli("evaluate", "--data", str(tiny_ferplus), "--model", str(run_dir / "model"))
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    rows = {line[:18].strip(): line[18:].split() for line in evaluate.stdout.splitlines()}
    assert rows["FER+ majority"][0] == str(WITH_MAJORITY)
    assert rows["agreed faces"][0] == str(AGREED)
    assert rows["FER-2013 labels"][0] == str(KEPT)
    assert f"{KEPT} faces; cross-entropy against the votes" in evaluate.stdout

    out = tmp_path / "calibrated"
    calibrate = fer_cli("calibrate", str(run_dir / "model"), "--data", str(tiny_ferplus), "--out", str(out))
    assert calibrate.returncode == 0, calibrate.stderr[-3000:]
    validation = json.loads((out / "model.json").read_text())["validation"]
    assert sum(validation["per_class"][e]["support"] for e in EMOTIONS) == WITH_MAJORITY  # fitted on the majority


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("train", "--targets", "crowd", "--out", "OUT"),
            "--targets: must be one of votes, majority, fer2013, both, or mix:W with W in [0, 1] (the votes' share); "
            "got 'crowd'",
        ),
        (("train", "--targets", "mix:1.5", "--out", "OUT"), "--targets: must be one of votes, "),
        (("evaluate", "--detect"), "--detect: "),
    ],
)
def test_bad_ferplus_options_are_one_line_errors(tiny_ferplus, tmp_path, args, message):
    args = [a.replace("OUT", str(tmp_path / "x")) for a in args]
    proc = fer_cli(args[0], "--data", str(tiny_ferplus), *args[1:])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_every_image_type_fer_label_reads_is_a_dataset_image(tmp_path):
    rng = np.random.default_rng(0)
    for i, ext in enumerate((".png", ".tif", ".tiff", ".webp", ".bmp")):
        folder = tmp_path / "faces" / "val" / EMOTIONS[i]
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / f"face{ext}"), synthetic_faces(1, i, rng)[0])
    proc = fer_cli("data", "stats", str(tmp_path / "faces"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:8] == ["val", "5", "1", "1", "1", "1", "1", "0"]


def test_called_neutral_is_the_share_of_expressive_faces_read_as_neutral():
    from fer.evaluate import called_neutral
    from fer.metrics import score

    angry, happy, neutral = (EMOTIONS.index(e) for e in ("angry", "happy", "neutral"))
    labels = np.array([angry] * 5 + [happy] * 5 + [neutral] * 4)
    predicted = np.array([neutral, neutral, angry, angry, angry, neutral, *[happy] * 4, *[neutral] * 3, angry])
    assert called_neutral(score(labels, predicted)) == 3 / 10  # the neutral face called angry does not count
