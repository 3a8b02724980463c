"""The command line as a user meets it: output and one-line errors."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.conftest import FER2013, SAMPLES, fer_cli


def test_data_stats_shows_counts_and_imbalance(tiny_dataset):
    proc = fer_cli("data", "stats", str(tiny_dataset))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["split", "total", "angry"]
    train = next(line for line in lines if line.startswith("train"))
    assert train.split()[1:9] == ["150", "24", "6", "24", "24", "24", "24", "24"]
    assert train.split()[-1] == "4.0x"


@pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 is not present")
def test_data_stats_on_shared_fer2013():
    proc = fer_cli("data", "stats", str(FER2013))
    assert "28709" in proc.stdout and "16.5x" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "stats", "/no/such/folder"], "no such dataset folder"),
        (["train", "--data", "/x"], "needs --data ROOT and --out RUN_DIR"),
        (
            ["train", "--data", "/x", "--out", "/tmp/x", "--arch", "alexnet"],
            "--arch: unknown architecture 'alexnet'; choose one of small, deep, wide, vggnet, vgg16, resnet50v2",
        ),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--detector", "haar"],
            "--detector: unknown detector 'haar'; choose one of yunet, blazeface, blazeface-full, mtcnn",
        ),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--tta", "twelve"],
            "--tta: unknown test-time augmentation 'twelve'; choose one of none, flip, ten-crop, shift",
        ),
        (["evaluate", "--model", "/no/bundle", "--data", "/x"], "no such model bundle: /no/bundle"),
        (["label", str(SAMPLES), "--out", "/tmp/x", "--model", str(SAMPLES)], "is not a model bundle (no model.json)"),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--fps", "nan"],
            "--fps: must be a number > 0 (or left out); got nan",
        ),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--decoders", "0"],
            "--decoders: must be a whole number >= 1 (or left out); got 0",
        ),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--min-face", "-5"],
            "--min-face: must be a whole number >= 1; got -5",
        ),
        (["label", str(SAMPLES), "--out", "/tmp/x", "--gpus", "-1"], "--gpus: must be a whole number >= 0; got -1"),
        (["train", "--data", "/x", "--out", "/tmp/x", "--epochs", "0"], "--epochs: must be a whole number >= 1; got 0"),
        (["train", "--data", "/x", "--out", "/tmp/x", "--lr", "-0.1"], "--lr: must be a number > 0; got -0.1"),
        (
            ["train", "--data", "/x", "--out", "/tmp/x", "--optimizer", "adam"],
            "--optimizer: must be one of adamw, sgd; got 'adam'",
        ),
        (
            ["train", "--data", "/x", "--out", "/tmp/x", "--precision", "float16"],
            "--precision: must be one of auto, float32, bfloat16; got 'float16'",
        ),
        (
            ["train", "--data", "/x", "--out", "/tmp/x", "--zoom", "0.9"],
            "--zoom: must be a number in [0, 0.5]; got 0.9",
        ),
        (
            ["train", "--data", "/x", "--out", "/tmp/x", "--shift", "0.7"],
            "--shift: must be a number in [0, 0.5]; got 0.7",
        ),
        (
            ["label", str(SAMPLES), "--out", "/tmp/x", "--runtime", "tflite"],
            "--runtime: must be one of auto, keras, litert; got 'tflite'",
        ),
        (["bundle", "a", "b"], "RUN_DIR: one training run (or --ensemble BUNDLE...); got 2 paths"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, message):
    proc = fer_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_help_lists_every_registered_choice():
    from fer.bundle import TTA
    from fer.train.models import ARCHITECTURES
    from fer.video.faces import DETECTORS

    label, train = fer_cli("label", "--help").stdout, fer_cli("train", "--help").stdout
    flat = lambda text: " ".join(text.replace("│", " ").split())  # noqa: E731 - undo rich's wrapping
    for registry, text in ((DETECTORS, label), (TTA, label), (ARCHITECTURES, train)):
        for name in registry.names():
            assert f"{name}: {registry.get(name).description}" in flat(text), name


def test_bundle_ensemble_records_how_it_was_made(untrained_bundle, tmp_path):
    out = tmp_path / "ens"
    args = ["bundle", "--ensemble", str(untrained_bundle), str(untrained_bundle), "--tta", "none,flip"]
    proc = fer_cli(*args, "--name", "pair", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["command"] == shlex.join(["fer", *args, "--name", "pair", "--out", str(out)])
    assert (meta["name"], [m["tta"] for m in meta["members"]]) == ("pair", ["none", "flip"])


def test_label_refuses_a_tta_the_ensemble_would_ignore(untrained_bundle, tmp_path):
    ens = tmp_path / "ens"
    made = fer_cli("bundle", "--ensemble", str(untrained_bundle), str(untrained_bundle), "--tta", "none,flip",
                   "--out", str(ens))  # fmt: skip
    assert made.returncode == 0, made.stderr
    proc = fer_cli("label", str(SAMPLES), "--out", str(tmp_path / "out"), "--model", str(ens), "--tta", "shift")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: --tta shift: this model's members run their own TTA (none, flip); use --tta none"


def test_a_missing_input_is_an_error_before_anything_is_written(tmp_path):
    proc = fer_cli("label", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: no such file or folder: {tmp_path / 'missing.mp4'}"
    assert not (tmp_path / "out").exists()  # not even its logs folder
