"""Distributed training on a real local Ray: two workers, bundles, balancing, failures, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer import bundle
from fer.data.augment import AugmentConfig, mixup
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.train import trainer
from fer.train.config import TrainConfig
from fer.train.loop import CHAOS_ENV, CHECKPOINT_STATE, _epoch_batches, _epoch_sample, phases
from tests.conftest import fer_cli, write_folder_dataset


def _checkpoints(run_dir) -> list[tuple[dict, object]]:
    """(state, directory) of every checkpoint in a run directory."""
    found = [p for p in run_dir.glob("checkpoint_*") if p.is_dir()]
    return [(json.loads((p / CHECKPOINT_STATE).read_text()), p) for p in found]


def _history(run_dir) -> dict:
    """Epoch metrics of the latest checkpoint in a run directory."""
    return max((state for state, _ in _checkpoints(run_dir)), key=lambda s: s["epochs_done"])


@pytest.fixture(scope="module")
def cli_run(tiny_dataset, tmp_path_factory):
    """`fer train` with two workers for two epochs, as a user runs it."""
    run_dir = tmp_path_factory.mktemp("runs") / "two-workers"
    proc = fer_cli(
        "train",
        "--data",
        str(tiny_dataset),
        "--out",
        str(run_dir),
        "--arch",
        "small",
        "--epochs",
        "2",
        "--workers",
        "2",
        "--batch-size",
        "32",
        "--precision",
        "bfloat16",  # explicit, not auto: the resume test below switches it, on any CPU
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc


def test_train_shows_its_epochs_and_files_the_frameworks_logs(cli_run):
    run_dir, proc = cli_run
    assert proc.stdout == f"model bundle: {run_dir / 'model'}\n"
    shown = proc.stderr.splitlines()
    assert any(line.startswith("epoch 2/2 ") and "val_acc" in line for line in shown), proc.stderr
    assert not [line for line in shown if "pid=" in line or "WARNING" in line or "I0000" in line], proc.stderr
    (log,) = (run_dir / "logs").glob("train-*.log")
    assert "RayTrainWorker" in log.read_text()


def test_two_worker_run_writes_a_bundle_that_predicts(cli_run):
    run_dir, proc = cli_run
    assert "epoch 2/2" in proc.stderr and "val_acc" in proc.stderr
    loaded = bundle.load(run_dir / "model")
    meta = loaded.meta
    assert meta["architecture"] == "small" and meta["training"]["epochs"] == 2
    assert meta["training"]["command"].startswith("fer train --data")
    assert meta["training"]["config"]["workers"] == 2
    assert len(meta["training"]["data"]["train"]["fingerprint"]) == 64
    assert set(meta["validation"]["per_class"]) == set(EMOTIONS)
    assert np.array(meta["validation"]["confusion_matrix"]).sum() == sum(meta["training"]["data"]["val"]["counts"])
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    probs = loaded.predict(faces)
    assert probs.shape == (4, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_augment_balancing_raises_the_minority_class(cli_run):
    run_dir, _ = cli_run
    state = _history(run_dir)
    seen = state["history"][-1]["seen_per_class_worker0"]
    # disgust has 6 images against 24 for every other class; balanced epochs draw it as often.
    assert state["train_counts"][1] == 6
    assert min(seen) >= 0.8 * max(seen)


def test_resume_continues_without_redoing_epochs_in_the_precision_asked(ray_local, cli_run):
    from fer.train.precision import policy_of

    run_dir, _ = cli_run
    result = trainer.resume(run_dir, epochs=3, keep_checkpoints=3, precision="float32")
    state = _history(run_dir)
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert [h["precision"] for h in state["history"]] == ["bfloat16", "bfloat16", "float32"]
    assert state["resumed_at_epoch"] == 3
    assert result.bundle == run_dir / "model"
    assert policy_of(bundle.load(result.bundle, runtime="keras").keras_model) == "float32"
    assert len(_checkpoints(run_dir)) == 3  # the first two kept under the larger --keep-checkpoints
    written = json.loads((run_dir / trainer.RUN_FILE).read_text())
    assert (written["keep_checkpoints"], written["precision"]) == (3, "float32")


def test_average_bundles_the_mean_weights_of_the_best_checkpoints_scored_afresh(cli_run, tiny_dataset, tmp_path):
    from fer._tf import keras
    from fer.evaluate import evaluate
    from fer.train.loop import CHECKPOINT_MODEL

    run_dir, _ = cli_run
    proc = fer_cli("bundle", str(run_dir), "--average", "2", "--out", str(tmp_path / "avg"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    averaged = bundle.load(tmp_path / "avg", runtime="keras")
    epochs = averaged.meta["training"]["averaged_epochs"]
    states = {s["epochs_done"]: p for s, p in _checkpoints(run_dir)}
    assert len(epochs) == 2 and set(epochs) <= set(states)
    parts = [keras.models.load_model(str(states[e] / CHECKPOINT_MODEL), compile=False) for e in epochs]
    for got, *each in zip(averaged.keras_model.get_weights(), *(m.get_weights() for m in parts), strict=True):
        np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-6, atol=1e-7)
    assert not np.allclose(parts[0].get_weights()[0], parts[1].get_weights()[0])  # two different epochs
    fresh = evaluate(averaged, tiny_dataset, "val")
    assert averaged.meta["validation"]["accuracy"] == pytest.approx(fresh.accuracy)
    assert averaged.meta["validation"]["confusion_matrix"] == fresh.to_dict()["confusion_matrix"]
    too_many = fer_cli("bundle", str(run_dir), "--average", "9", "--out", str(tmp_path / "no"))
    assert too_many.returncode == 2 and "--average: " in too_many.stderr and "fewer than 9" in too_many.stderr
    assert not (tmp_path / "no").exists()


def test_new_run_refuses_an_existing_run_dir(cli_run, tiny_dataset):
    run_dir, _ = cli_run
    proc = fer_cli("train", "--data", str(tiny_dataset), "--out", str(run_dir), "--arch", "small")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "--resume" in proc.stderr


def test_resume_refuses_options_it_would_ignore(cli_run):
    run_dir, _ = cli_run
    proc = fer_cli("train", "--resume", str(run_dir), "--lr", "0.5", "--arch", "deep")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --resume continues a run with the settings it was started with; --arch, --lr cannot change "
        "(only --epochs, --address, --precision, --keep-checkpoints can)"
    ]


def test_a_missing_class_is_refused_and_leaves_nothing_that_blocks_a_retry(tmp_path):
    counts = {name: 8 for name in EMOTIONS}
    counts["disgust"] = 0  # an empty class folder
    data = write_folder_dataset(tmp_path / "faces", counts)
    run_dir = tmp_path / "run"
    for _ in range(2):  # the retry meets the same clear error, not "already holds a training run"
        proc = fer_cli("train", "--data", str(data), "--out", str(run_dir), "--arch", "small", "--epochs", "1")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"error: {data / 'train'} has no images of disgust (missing or empty class folders); "
            "fer trains on all 7 FER-2013 classes"
        )
        assert not (run_dir / "fer_run.json").exists()


def test_worker_crash_is_survived_from_the_checkpoint(ray_local, tiny_dataset, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CHAOS_ENV, f"2:{marker}")
    run_dir = tmp_path / "chaos"
    config = TrainConfig(
        data=str(tiny_dataset),
        out=str(run_dir),
        arch="small",
        epochs=3,
        workers=2,
        batch_size=32,
        max_failures=1,
    )
    result = trainer.start(config)
    assert marker.read_text().startswith("crashed at epoch 2")
    state = _history(run_dir)
    # Epoch 1 finished before the crash and was not redone: the restart began at epoch 2.
    assert state["resumed_at_epoch"] == 2
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert bundle.load(result.bundle).meta["training"]["epochs"] == 3


def test_evaluate_cli_prints_metrics(cli_run, tiny_dataset):
    run_dir, _ = cli_run
    proc = fer_cli("evaluate", "--model", str(run_dir / "model"), "--data", str(tiny_dataset), "--tta", "flip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("model ") and "accuracy" in out and "macro-F1" in out and "confusion matrix" in out
    assert all(name in out for name in EMOTIONS)
    assert proc.stderr == ""  # Ray's and TensorFlow's lines are filed, not shown


def test_init_fine_tunes_an_existing_bundle(ray_local, tiny_dataset, untrained_bundle, tmp_path):
    config = TrainConfig(
        data=str(tiny_dataset), out=str(tmp_path / "ft"), epochs=1, workers=1, batch_size=32,
        init=str(untrained_bundle),
    )  # fmt: skip
    result = trainer.start(config)
    tuned = bundle.load(result.bundle, runtime="keras")
    assert tuned.meta["training"]["config"]["init"] == str(untrained_bundle)
    assert tuned.meta["architecture"] == "small"  # taken from the initial bundle
    parent = bundle.read_meta(untrained_bundle)
    assert tuned.meta["training"]["init"]["id"] == parent["id"]  # the lineage stays on record
    before = bundle.load(untrained_bundle, runtime="keras").keras_model.get_weights()
    after = tuned.keras_model.get_weights()
    assert len(before) == len(after) and any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_transfer_model_trains_frozen_then_fine_tuned(ray_local, tiny_dataset, tmp_path):
    config = TrainConfig(
        data=str(tiny_dataset), out=str(tmp_path / "vgg"), arch="vgg16", weights="none", input_size=32,
        epochs=2, freeze_epochs=1, fine_tune_blocks=1, workers=1, batch_size=32, limit_per_class=8,
    )  # fmt: skip
    result = trainer.start(config)
    history = _history(result.run_dir)["history"]
    # Epoch 1 trains the head at lr; epoch 2 the unfrozen top block at fine_tune_lr.
    assert history[0]["lr"] == pytest.approx(config.lr) and history[1]["lr"] <= config.fine_tune_lr
    tuned = bundle.load(result.bundle)
    assert tuned.meta["architecture"] == "vgg16"
    assert tuned.predict(np.zeros((2, 48, 48), np.uint8)).shape == (2, 7)


def test_teacher_is_distilled_and_recorded(ray_local, tiny_dataset, untrained_bundle, tmp_path):
    members = [untrained_bundle, untrained_bundle]
    teacher = bundle.save_ensemble(members, tmp_path / "ens", {"name": "ens"}, ["flip", None])
    config = TrainConfig(
        data=str(tiny_dataset), out=str(tmp_path / "student"), arch="small", epochs=1, workers=1, batch_size=32,
        teacher=str(teacher), teacher_weight=0.7,
    )  # fmt: skip
    student = bundle.load(trainer.start(config).bundle)
    lineage = student.meta["training"]["teacher"]
    assert lineage["id"] == bundle.read_meta(teacher)["id"] and lineage["name"] == "ens"
    assert student.meta["training"]["config"]["teacher_weight"] == 0.7
    with pytest.raises(FerError, match="--teacher-weight: must be a number in \\[0, 1\\]; got 1.5"):
        TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "x"), teacher=str(teacher), teacher_weight=1.5)
    with pytest.raises(FerError, match="no such model bundle"):
        TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "x"), teacher=str(tmp_path / "none"))


def test_the_teacher_labels_each_face_as_the_student_sees_it(tiny_dataset, untrained_bundle, tmp_path):
    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), teacher_weight=0.7, balance="none")
    teacher = bundle.load(untrained_bundle)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8), np.full(20, 3)  # all sad: one label to mix
    xb, targets, weights, seen = _epoch_sample(config, x, y, np.eye(7, dtype=np.float32)[y], None, teacher, None, 21,
                                              epoch=0, rank=0)  # fmt: skip
    assert not any(np.array_equal(view, face) for view in xb for face in x)  # augmented views, not the faces
    # Each target is 0.3 x the one-hot label + 0.7 x the teacher's probabilities for the view.
    np.testing.assert_allclose(targets, 0.3 * np.eye(7)[3] + 0.7 * teacher.predict(xb), atol=1e-6)
    assert weights is None and seen == [0, 0, 0, 21, 0, 0, 0]


def test_mixup_blends_faces_and_targets_alike(tiny_dataset, tmp_path):
    augment = AugmentConfig(mixup=0.4, brightness=0, contrast=0)  # geometry alone keeps a flat face flat
    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), augment=augment)
    faces = np.stack([np.full((48, 48), 10 * i, np.uint8) for i in range(7)])  # face i is grey level 10 i
    blends, partners, shares = mixup(faces, np.random.default_rng(0), 0.4)
    np.testing.assert_array_equal(blends[:, 0, 0], np.rint(shares * faces[:, 0, 0] + (1 - shares) * 10 * partners))
    assert sorted(partners) == list(range(7)) and ((shares > 0) & (shares < 1)).all()
    with pytest.raises(FerError, match="--mixup: must be a number >= 0; got -1"):
        TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "x"), augment=AugmentConfig(mixup=-1))
    xb, targets, _, _ = _epoch_sample(config, faces, np.arange(7), np.eye(7, dtype=np.float32), None, None,
                                      np.full(7, 4), 28, epoch=0, rank=0)  # fmt: skip
    # A blend of classes i and j at share s is grey s 10 i + (1 - s) 10 j; its target weighs i and j alike.
    np.testing.assert_allclose(targets.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(targets @ (10 * np.arange(7)), xb[:, 24, 24], atol=0.5 + 1e-4)
    assert (np.count_nonzero(targets, axis=1) == 2).mean() > 0.5  # most blends are of two classes


def test_a_phase_is_its_epochs_samples_in_order_through_one_iterator(tiny_dataset, tmp_path):
    # Each epoch's own iterator made the epoch wait up to a minute for tf.data's autotuning
    # thread as it was freed (see _epoch_batches): a phase is one dataset over its epochs.
    from fer._tf import tf

    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), batch_size=4)
    faces = np.arange(3 * 8 * 48 * 48, dtype=np.uint32).reshape(3, 8, 48, 48).astype(np.uint8)
    targets = np.eye(7, dtype=np.float32)[np.arange(8) % 7]
    asked = []

    def sample(epoch):
        asked.append(epoch)
        return faces[epoch], targets, None

    ds = _epoch_batches(config, range(1, 3), sample, steps=2)(tf.distribute.InputContext())
    assert ds.options().autotune.enabled is False
    batches = list(ds.as_numpy_iterator())
    assert asked == [1, 2] and len(batches) == 4
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches])[..., 0], faces[1:].reshape(16, 48, 48))
    np.testing.assert_array_equal(np.concatenate([t for _, t in batches]), np.concatenate([targets, targets]))


def test_phases_split_transfer_runs_at_the_unfreezing_and_skip_what_is_done(tiny_dataset, tmp_path):
    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), arch="deep", epochs=10)
    assert phases(config, 0) == [(0, 10)] and phases(config, 4) == [(4, 10)] and phases(config, 10) == []
    transfer = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "t"), arch="vgg16", epochs=10, freeze_epochs=3)
    assert phases(transfer, 0) == [(0, 3), (3, 10)] and phases(transfer, 2) == [(2, 3), (3, 10)]
    assert phases(transfer, 5) == [(5, 10)]


def test_a_teacher_temperature_softens_its_probabilities_and_keeps_their_order():
    from fer.train.loop import soften

    probs = np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(soften(probs, 1.0), probs)
    warm = soften(probs, 2.0)
    np.testing.assert_allclose(warm.sum(), 1, rtol=1e-6)
    assert warm[0, 0] < 0.7 and warm[0, 2] > 0.1 and list(np.argsort(-warm[0])[:3]) == [0, 1, 2]
    np.testing.assert_allclose(warm[0, :3], np.sqrt([0.7, 0.2, 0.1]) / np.sqrt([0.7, 0.2, 0.1]).sum(), rtol=1e-3)
