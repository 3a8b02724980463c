"""In-the-wild faces: a facial_expressions checkout split by person, its faces cut as `fer label`
cuts them (`fer data crop`), scored beside val (`fer evaluate --wild`) and joined to training
as a second source with its own loss weight (`fer train --extra`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.data import fer2013, wild
from fer.data.augment import AugmentConfig
from fer.data.balance import class_weights
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.train.config import TrainConfig
from fer.train.loop import _epoch_sample
from tests.conftest import SAMPLES, fer_cli, write_folder_dataset
from tests.tiles import read_frames

#: Names of people as the checkout spells them (LFW's and the film stills'), enough that both
#: splits get some; which split each lands in is the hash's choice, checked below.
PEOPLE = ["Anna_Smith", "Bob_Jones", "RaviKumar", "Carla_Diaz", "Dev_Patel", "Eve_Moss", "Farida", "Gus_Lee"]
#: (emotion as the legend writes it, fer's class or None) in turn for each person's photos.
EMOTION_NAMES = [("HAPPINESS", "happy"), ("sadness", "sad"), ("anger", "angry"), ("contempt", None),
                 ("Neutral", "neutral"), ("surprise", "surprise")]  # fmt: skip


def photos() -> list[tuple[str, str, str | None]]:
    """Two photos a person: (file name, emotion as the legend writes it, fer's class or None)."""
    names = [f"{n}_{i + 1:04d}.jpg" if "_" in n else f"{n}_{i + 1}.jpg" for n in PEOPLE for i in range(2)]
    return [(name, *EMOTION_NAMES[k % len(EMOTION_NAMES)]) for k, name in enumerate(names)]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """:func:`photos` (frames of the sample clips, so there are faces to find), a blank photo
    labelled fear (no face), and a legend row whose photo is missing."""
    root = tmp_path_factory.mktemp("wild") / "facial_expressions"
    (root / "images").mkdir(parents=True)
    (root / "data").mkdir()
    frames = read_frames(SAMPLES / "single_face.mp4", limit=4) + read_frames(SAMPLES / "carphone_pristine.mp4", limit=4)
    rows = ["user.id,image,emotion"]
    for k, (image, emotion, _) in enumerate(photos()):
        cv2.imwrite(str(root / "images" / image), frames[k % len(frames)])
        rows.append(f"7,{image},{emotion}")
    cv2.imwrite(str(root / "images" / "Nobody_0001.jpg"), np.full((200, 200, 3), 90, np.uint8))
    rows += ["7,Nobody_0001.jpg,fear", "7,Ghost_0001.jpg,happiness"]
    rows += [f"7,{photos()[0][0]},fear"]  # listed again with another class: neither label is trusted
    (root / "data" / "legend.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_person_is_on_one_side_only_and_labels_are_fers(checkout):
    assert [wild.person(n) for n in ("George_W_Bush_0001.jpg", "HrithikRoshan_12.jpg", "Steve-O_0001.jpg")] == [
        "George_W_Bush", "HrithikRoshan", "Steve-O"]  # fmt: skip
    listed = {split: wild.list_split(checkout, split) for split in wild.SPLITS}
    people = {split: {wild.person(p) for p in paths} for split, (paths, _) in listed.items()}
    assert people["train"] and people["check"] and not people["train"] & people["check"]
    every = {Path(p).name: EMOTIONS[c] for paths, labels in listed.values() for p, c in zip(paths, labels, strict=True)}
    expected = {image: label for image, _, label in photos()[1:] if label is not None}  # contempt: no class here
    assert every == {**expected, "Nobody_0001.jpg": "fear"}  # the missing photo is left out
    with pytest.raises(FerError, match=r"--split: must be one of train, check for .*; got 'val'"):
        wild.list_split(checkout, "val")
    with pytest.raises(FerError, match="not a facial_expressions checkout"):
        wild.list_split(checkout / "images", "train")


def test_crop_cuts_each_split_into_class_folders(checkout, tmp_path):
    proc = fer_cli("data", "crop", str(checkout), "--out", str(tmp_path / "crops"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "crops" / "crops.json").read_text())
    for split in wild.SPLITS:
        paths, labels = wild.list_split(checkout, split)
        row = record["splits"][split]
        found = {p for p in paths if "Nobody" not in p}  # the blank photo has no face
        assert row["photos"] == len(paths) and row["faces"] == len(found)
        assert f"{split}: faces found in {len(found)} of {len(paths)} photos" in proc.stdout
        written = sorted((tmp_path / "crops" / split).glob("*/*.png"))
        assert sorted((f.parent.name, f.stem) for f in written) == sorted(
            (EMOTIONS[label], Path(p).stem) for p, label in zip(paths, labels, strict=True) if p in found)  # fmt: skip
        assert all(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).shape == (48, 48) for f in written)
    again = fer_cli("data", "crop", str(checkout), "--out", str(tmp_path / "crops"), "--split", "check")
    assert again.returncode == 2 and f"--out: {tmp_path / 'crops' / 'check'} already holds files" in again.stderr
    for f in (tmp_path / "crops" / "check").glob("*/*.png"):  # check cut again alone: train's record stays
        f.unlink()
    again = fer_cli("data", "crop", str(checkout), "--out", str(tmp_path / "crops"), "--split", "check", "--no-align")
    assert again.returncode == 0, again.stderr[-2000:]
    kept = json.loads((tmp_path / "crops" / "crops.json").read_text())["splits"]
    assert kept["train"] == record["splits"]["train"] and kept["check"]["config"]["align"] is False
    bad = fer_cli("data", "crop", str(checkout), "--out", str(tmp_path / "x"), "--min-face", "0")
    assert bad.returncode == 2 and "--min-face: must be" in bad.stderr and not (tmp_path / "x").exists()


def test_evaluate_scores_the_wild_check_beside_val(checkout, tiny_ferplus, untrained_bundle):
    paths, _ = wild.list_split(checkout, "check")
    proc = fer_cli("evaluate", "--data", str(tiny_ferplus), "--model", str(untrained_bundle), "--wild", str(checkout))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FER+ majority" in proc.stdout
    block = proc.stdout.split(f"in the wild: {checkout} [check]")[1]
    found = sum("Nobody" not in p for p in paths)
    assert f"faces found in {found} of {len(paths)} images" in block
    assert "called neutral" in block and "confusion matrix" in block
    bad = fer_cli("evaluate", "--data", str(tiny_ferplus), "--wild", str(tiny_ferplus))
    assert bad.returncode == 2 and "--wild: " in bad.stderr and "not a facial_expressions checkout" in bad.stderr
    alone = fer_cli("evaluate", "--data", str(checkout), "--model", str(untrained_bundle))  # its check split
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert f"on {checkout} [check]" in alone.stdout and f"faces found in {found} of {len(paths)}" in alone.stdout
    val = fer_cli("evaluate", "--data", str(checkout), "--split", "val")
    assert (
        val.returncode == 2
        and "--split: must be one of train, check for a facial_expressions checkout; got 'val'" in val.stderr
    )


def test_a_second_source_joins_training_with_its_own_weight(tiny_ferplus, ray_local, tmp_path):
    from fer.data import sources

    skewed = write_folder_dataset(tmp_path / "skewed", {name: 30 if name == "happy" else 3 for name in EMOTIONS})
    main = sources.read_split(tiny_ferplus, "train")
    extra = sources.read_split(skewed, "train")  # another class mix than main's: weighted counts differ
    joined = main.joined(extra, 0.25)
    columns = fer2013.to_columns(joined.dataset)
    assert joined.counts == [a + b for a, b in zip(main.counts, extra.counts, strict=True)]
    assert sorted(columns["weight"].tolist()) == [0.25] * extra.size + [1.0] * main.size
    one_hot = columns["weight"] == 0.25  # the extra faces' targets are their labels, one-hot
    np.testing.assert_array_equal(columns["target"][one_hot], np.eye(7)[columns["label"][one_hot]])
    np.testing.assert_allclose(columns["target"][~one_hot].sum(axis=1), 1, atol=1e-6)  # FER+'s vote shares
    x, y, t, w = columns["image"], columns["label"], fer2013.targets_of(columns), columns["weight"]
    config = TrainConfig(data=str(tiny_ferplus), out=str(tmp_path / "r"), extra=str(skewed), extra_weight=0.25)
    _, _, weights, _ = _epoch_sample(config, x, y, t, w, None, joined.counts, 64, epoch=0, rank=0)
    assert set(np.unique(weights)) == {0.25, 1.0}
    # Under class weights, a class's weight comes from its faces' total weight, times each face's own.
    weighted = replace(config, balance="class-weight", use_augment=False)
    coded = np.zeros_like(x)  # each face's index in its first two pixels: which faces were drawn
    coded[:, 0, 0], coded[:, 0, 1] = np.arange(len(x)) % 256, np.arange(len(x)) // 256
    xb, _, weights, _ = _epoch_sample(weighted, coded, y, t, w, None, joined.counts, 64, epoch=0, rank=0)
    drawn = xb[:, 0, 0].astype(int) + 256 * xb[:, 0, 1].astype(int)
    by_class = class_weights(np.bincount(y, weights=w, minlength=7))
    assert not np.allclose(by_class, class_weights(np.bincount(y, minlength=7)))  # the face weights count
    np.testing.assert_allclose(weights, w[drawn] * by_class[y[drawn]], rtol=1e-6)
    # Under mixup, a blend weighs what its two faces weigh, shared as the faces are.
    blended = replace(config, augment=AugmentConfig(mixup=0.4), use_augment=True)
    _, targets, weights, _ = _epoch_sample(blended, x, y, t, w, None, joined.counts, 64, epoch=0, rank=0)
    assert ((weights > 0.25) & (weights < 1.0)).any() and ((weights >= 0.25) & (weights <= 1.0)).all()
    with pytest.raises(FerError, match="--extra-weight: must be"):
        TrainConfig(data=str(tiny_ferplus), out=str(tmp_path / "r"), extra=str(skewed), extra_weight=0)


def test_fer_train_takes_the_second_source(tiny_dataset, tiny_ferplus, checkout, tmp_path):
    for extra, message in (
        (tmp_path / "nowhere", "--extra: no such folder"),
        (checkout, f"--extra: {checkout} holds uncropped photos; cut their faces first"),
    ):
        bad = fer_cli("train", "--data", str(tiny_ferplus), "--extra", str(extra), "--out", str(tmp_path / "x"))
        assert bad.returncode == 2 and message in bad.stderr and not (tmp_path / "x").exists(), bad.stderr
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer.cli",
            "train",
            "--data",
            str(tiny_ferplus),
            "--extra",
            os.path.relpath(tiny_dataset, tmp_path),
            "--extra-weight",
            "0.5",
            "--out",
            "run",
            "--arch",
            "small",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # a relative --extra, read from where the command ran
    source = json.loads((out / "fer_data.json").read_text())["train"]["source"]
    assert source.endswith(f"+ {tiny_dataset}/train (weight 0.5)")
    meta = json.loads((out / "model" / "model.json").read_text())
    assert (
        meta["training"]["config"]["extra"] == str(tiny_dataset) and meta["training"]["config"]["extra_weight"] == 0.5
    )
