"""FER-2013 readers on CSV and folder data the tests write, bad inputs, and the shared copy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer.data import fer2013
from fer.errors import FerError
from fer.labels import EMOTIONS, FACE_SIZE
from tests.conftest import FER2013, write_csv_dataset, write_folder_dataset


def test_folder_reader_reads_images_and_labels(ray_local, tmp_path):
    root = write_folder_dataset(tmp_path / "d", {"angry": 3, "Happy": 5, "NEUTRAL": 2}, splits=("train",))
    split = fer2013.read_split(root, "train")
    images, labels = split.to_numpy()
    assert images.shape == (10, FACE_SIZE, FACE_SIZE) and images.dtype == np.uint8
    assert split.counts == [3, 0, 0, 5, 0, 0, 2]
    assert sorted(labels.tolist()) == [0] * 3 + [3] * 5 + [6] * 2
    assert split.converted == 0 and split.unreadable == []
    # The synthetic bar encodes the class: labels really belong to their images.
    for img, lab in zip(images, labels, strict=True):
        assert img[3 + lab * 6 + 1, 20] == 230


def test_folder_reader_converts_colour_and_size_and_skips_unreadable(ray_local, tmp_path):
    root = write_folder_dataset(tmp_path / "d", {name: 40 for name in EMOTIONS}, splits=("train",))
    colour = np.zeros((100, 80, 3), np.uint8)
    colour[..., 2] = 200
    cv2.imwrite(str(root / "train" / "fear" / "colour.png"), colour)
    (root / "train" / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    split = fer2013.read_split(root, "train")
    assert split.converted == 1
    assert [p.endswith("broken.jpg") for p in split.unreadable] == [True]
    assert split.size == 7 * 40 + 1
    assert "1 unreadable skipped" in split.describe()


def test_folder_reader_fails_when_too_many_unreadable(ray_local, tmp_path):
    root = write_folder_dataset(tmp_path / "d", {"angry": 5}, splits=("train",))
    for i in range(2):
        (root / "train" / "angry" / f"bad{i}.png").write_bytes(b"")
    with pytest.raises(FerError, match="2 of 7 images .* could not be read"):
        fer2013.read_split(root, "train")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: (r / "train" / "joy").mkdir(parents=True), "unknown class folder .*joy"),
        (lambda r: (r / "train" / "angry").mkdir(parents=True), "holds no images"),
        (lambda r: (r / "other").mkdir(parents=True), "no split folder .*train.*splits found: other"),
    ],
)
def test_folder_reader_bad_layouts_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(FerError, match=message) as err:
        fer2013.read_split(tmp_path, "train")
    assert "\n" not in str(err.value)


def test_csv_reader_matches_folder_form(ray_local, tmp_path):
    csv = write_csv_dataset(tmp_path / "fer2013.csv", {"Training": 4, "PublicTest": 2})
    train = fer2013.read_split(csv, "train")
    val = fer2013.read_split(csv, "PublicTest")
    assert train.counts == [4] * 7 and val.counts == [2] * 7
    images, labels = train.to_numpy()
    assert images.shape == (28, FACE_SIZE, FACE_SIZE) and images.dtype == np.uint8
    assert all(img[3 + lab * 6 + 1, 20] == 230 for img, lab in zip(images, labels, strict=True))
    assert train.fingerprint != val.fingerprint
    assert fer2013.split_counts(csv) == {"PublicTest": [2] * 7, "Training": [4] * 7}


def test_csv_reader_bad_rows_name_the_row(tmp_path):
    csv = write_csv_dataset(tmp_path / "f.csv", {"Training": 1})
    lines = csv.read_text().splitlines()
    lines[3] = "2,1 2 3,Training"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(FerError, match=r"f\.csv row 4: expected 2304 pixel values, found 3"):
        fer2013.read_split(csv, "train")
    with pytest.raises(FerError, match="split PrivateTest is empty"):
        fer2013.read_split(csv, "test")
    with pytest.raises(FerError, match="unknown CSV split"):
        fer2013.read_split(csv, "holdout")
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FerError, match="missing column"):
        fer2013.read_split(tmp_path / "wrong.csv", "train")


def test_fingerprint_ignores_order_but_not_content(ray_local, tmp_path):
    a = write_folder_dataset(tmp_path / "a", {"angry": 4, "sad": 4}, splits=("train",), seed=1)
    b = write_folder_dataset(tmp_path / "b", {"angry": 4, "sad": 4}, splits=("train",), seed=1)
    c = write_folder_dataset(tmp_path / "c", {"angry": 4, "sad": 4}, splits=("train",), seed=2)
    (b / "train" / "angry" / "train_0000.png").rename(b / "train" / "angry" / "zzz.png")
    fa, fb, fc = (fer2013.read_split(r, "train").fingerprint for r in (a, b, c))
    assert fa == fb != fc


@pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 is not present")
def test_folder_reader_on_shared_fer2013_sample(ray_local):
    split = fer2013.read_split(FER2013, "val", limit_per_class=20)
    assert split.counts == [20] * 7
    images, labels = split.to_numpy()
    assert images.shape == (140, 48, 48) and set(labels.tolist()) == set(range(7))
    assert 40 < images.mean() < 200  # real faces, not blank decodes
    counts = fer2013.split_counts(FER2013)
    assert counts["train"] == [3995, 436, 4097, 7215, 4830, 3171, 4965]
