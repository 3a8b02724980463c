"""The architecture registry, the bundle format and its loader."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fer import bundle
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.train import models


@pytest.mark.parametrize("arch", list(models.ARCHITECTURES))
def test_every_architecture_builds_and_predicts(arch):
    m = models.build(arch, weights=None, input_size=48)
    out = m.predict(np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32"), verbose=0)
    assert out.shape == (2, len(EMOTIONS))
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_wide_sees_the_central_40_pixels_only():
    m = models.build("wide")
    faces = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    border, centre = faces.copy(), faces.copy()
    cut = models.CROP_MARGIN
    border[:, :cut] = border[:, -cut:] = border[:, :, :cut] = border[:, :, -cut:] = 0
    centre[:, 20:28, 20:28] = 0
    out = m.predict(faces, verbose=0)
    np.testing.assert_allclose(m.predict(border, verbose=0), out, atol=1e-6)
    assert np.abs(m.predict(centre, verbose=0) - out).max() > 1e-4


def test_shift_tta_shows_wide_the_five_40_pixel_crops_and_their_mirrors():
    faces = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    views = bundle.TTA.get("shift").factory(faces)
    assert len(views) == bundle.TTA.get("shift").info["passes"]
    m, c = models.CROP_MARGIN, 48 - 2 * models.CROP_MARGIN
    seen = [v[:, m : m + c, m : m + c] for v in views]  # what wide's centre crop keeps of each view
    for y, x in [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]:
        crop = faces[:, y : y + c, x : x + c]
        assert any(np.array_equal(s, crop) for s in seen)
        assert any(np.array_equal(s, crop[:, :, ::-1]) for s in seen)


def test_transfer_backbone_loads_local_weights_file_and_freezes(tmp_path):
    from fer._tf import keras

    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3))
    path = tmp_path / "vgg16_notop.h5"
    source.save_weights(str(path))
    m = models.build("vgg16", weights=str(path), input_size=48)
    loaded = m.get_layer(models.BACKBONE)
    for a, b in zip(source.get_weights(), loaded.get_weights(), strict=True):
        assert np.array_equal(a, b)
    models.set_backbone_trainable(m, "vgg16", 0)
    assert not loaded.trainable and loaded.trainable_weights == []
    models.set_backbone_trainable(m, "vgg16", 1)
    names = {w.name.split("/")[0] for w in loaded.trainable_weights}
    assert names == {"block5_conv1", "block5_conv2", "block5_conv3"}


def test_bad_architecture_and_weights_are_user_errors(tmp_path):
    with pytest.raises(FerError, match="unknown architecture"):
        models.build("alexnet")
    with pytest.raises(FerError, match="cannot load vgg16 weights"):
        models.build("vgg16", weights=str(tmp_path / "missing.h5"), input_size=48)


def _bundle(tmp_path):
    m = models.build("small")
    return bundle.save(m, tmp_path / "b", {"name": "t", "architecture": "small"})


def test_bundle_roundtrip_predicts_probabilities(tmp_path):
    path = _bundle(tmp_path)
    meta = json.loads((path / bundle.META_FILE).read_text())
    assert meta["format_version"] == bundle.FORMAT_VERSION and meta["labels"] == list(EMOTIONS)
    loaded = bundle.load(path)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    for tta in bundle.TTA_MODES:
        p = loaded.predict(faces, tta=tta)
        assert p.shape == (5, 7) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    # Colour crops of another size are converted, not refused.
    colour = rng.integers(0, 256, (3, 90, 70, 3), dtype=np.uint8)
    assert loaded.predict(list(colour)).shape == (3, 7)
    assert loaded.id == meta["id"] and len(loaded.id) == 16


def test_bundle_refuses_unknown_format_version(tmp_path):
    path = _bundle(tmp_path)
    meta = json.loads((path / bundle.META_FILE).read_text())
    meta["format_version"] = 99
    (path / bundle.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FerError, match="format version 99 is not supported"):
        bundle.load(path)
    with pytest.raises(FerError, match="not a model bundle"):
        bundle.load(tmp_path)


def test_bundle_id_is_the_weights_not_the_file(tmp_path):
    import time

    model = models.build("small")
    first = bundle.save(model, tmp_path / "a", {"name": "a"})
    time.sleep(1.1)  # the .keras archive records its save time to the second
    again = bundle.save(bundle.load(first, runtime="keras").keras_model, tmp_path / "b", {"name": "b"})
    assert (first / bundle.MODEL_FILE).read_bytes() != (again / bundle.MODEL_FILE).read_bytes()
    assert bundle.read_meta(first)["id"] == bundle.read_meta(again)["id"]
    weights = model.get_weights()
    weights[-1] = weights[-1] + 1e-3
    model.set_weights(weights)
    assert bundle.read_meta(bundle.save(model, tmp_path / "c", {"name": "c"}))["id"] != bundle.read_meta(first)["id"]


def test_runtimes_agree_and_auto_prefers_litert(tmp_path):
    path = _bundle(tmp_path)
    assert (path / bundle.LITERT_FILE).is_file()
    faces = np.random.default_rng(1).integers(0, 256, (70, 48, 48), dtype=np.uint8)
    lite, tf_keras = bundle.load(path), bundle.load(path, runtime="keras")
    assert (lite.runtime, tf_keras.runtime) == ("litert", "keras")
    for tta in bundle.TTA_MODES:  # 70 faces: two full LiteRT batches and a short one; int8 weights
        np.testing.assert_allclose(lite.predict(faces, tta=tta), tf_keras.predict(faces, tta=tta), atol=0.02)
    (path / bundle.LITERT_FILE).unlink()  # a bundle written before LiteRT runs on tf-keras
    assert bundle.load(path).runtime == "keras"
    with pytest.raises(FerError, match="--runtime litert: .* has no model.tflite"):
        bundle.load(path, runtime="litert")
    with pytest.raises(FerError, match="--runtime: must be one of auto, keras, litert; got 'tflite'"):
        bundle.load(path, runtime="tflite")


def test_loading_on_tf_keras_leaves_the_process_thread_pools_alone(tmp_path):
    path = _bundle(tmp_path)
    code = (
        "import sys; from fer import bundle; from fer._tf import tf; "
        "bundle.load(sys.argv[1], runtime='keras', threads=1); "
        "print(tf.config.threading.get_intra_op_parallelism_threads())"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "0"  # TensorFlow's default, as the caller left it


def test_ensemble_averages_its_members(tmp_path):
    a = bundle.save(models.build("small"), tmp_path / "a", {"name": "a"})
    b = bundle.save(models.build("small"), tmp_path / "b", {"name": "b"})
    ens = bundle.save_ensemble([a, b], tmp_path / "ens", {"name": "ens"}, tta=[None, "flip"])
    meta = bundle.read_meta(ens)
    assert meta["format_version"] == bundle.ENSEMBLE_FORMAT_VERSION
    assert [m["tta"] for m in meta["members"]] == [None, "flip"]
    assert meta["params"] == bundle.read_meta(a)["params"] + bundle.read_meta(b)["params"]
    faces = np.random.default_rng(2).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    ma, mb, me = bundle.load(a), bundle.load(b), bundle.load(ens)
    for tta in ("none", "ten-crop"):  # member b keeps its own flip
        want = (ma.predict(faces, tta=tta) + mb.predict(faces, tta="flip")) / 2
        np.testing.assert_allclose(me.predict(faces, tta=tta), want, atol=1e-6)
    # The same members give the same id; other modes another.
    again = bundle.save_ensemble([a, b], tmp_path / "again", {"name": "x"}, tta=[None, "flip"])
    other = bundle.save_ensemble([a, b], tmp_path / "other", {"name": "x"})
    assert bundle.read_meta(again)["id"] == meta["id"] != bundle.read_meta(other)["id"]
    # Every member with its own mode: a caller's other mode would change nothing, so it is refused.
    fixed = bundle.load(bundle.save_ensemble([a, b], tmp_path / "fixed", {"name": "x"}, tta=["none", "flip"]))
    np.testing.assert_allclose(fixed.predict(faces), (ma.predict(faces) + mb.predict(faces, tta="flip")) / 2, atol=1e-6)
    with pytest.raises(FerError, match=r"--tta shift: this model's members run their own TTA \(none, flip\)"):
        fixed.predict(faces, tta="shift")
    with pytest.raises(FerError, match="--ensemble: needs two or more"):
        bundle.save_ensemble([a], tmp_path / "one", {})
    with pytest.raises(FerError, match="unknown test-time augmentation 'blur'"):
        bundle.save_ensemble([a, b], tmp_path / "bad", {}, tta=["blur", None])


def test_a_bundle_is_replaced_in_one_step(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "which").write_text(d.name)
    assert bundle.exchange(a, b)  # Linux: one rename swaps both, no moment without either
    assert ((a / "which").read_text(), (b / "which").read_text()) == ("b", "a")
    target = tmp_path / "bundle"
    bundle.save(models.build("small"), target, {"name": "first"})
    bundle.save(models.build("small"), target, {"name": "second"})
    assert bundle.read_meta(target)["name"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "bundle"]  # the old one is gone


def test_multiply_adds_counts_convolutions_and_dense_layers():
    from fer._tf import keras
    from fer.train.models import multiply_adds

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    inner = keras.Sequential([keras.Input((48, 48, 8)), keras.layers.DepthwiseConv2D(3, strides=2, padding="same")])
    x = keras.layers.GlobalAveragePooling2D()(inner(x))
    outputs = keras.layers.Dense(7)(x)
    assert multiply_adds(keras.Model(inputs, outputs)) == 48 * 48 * 9 * 8 + 24 * 24 * 9 * 8 + 8 * 7
