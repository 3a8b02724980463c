"""Training precision: when ``auto`` takes bfloat16, and models cast between float32 and mixed bfloat16."""

from __future__ import annotations

import numpy as np

from fer.train import models, precision
from fer.train.config import TrainConfig


def test_auto_takes_bfloat16_on_cpus_that_compute_it_and_float32_elsewhere(tmp_path):
    native, plain = tmp_path / "zen4", tmp_path / "zen2"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert precision.cpu_has_bf16(native)
    assert not precision.cpu_has_bf16(plain) and not precision.cpu_has_bf16(tmp_path / "no-such-file")
    assert precision.resolve("auto", gpus=1) == "float32"
    assert precision.resolve("bfloat16", gpus=1) == "bfloat16" and precision.resolve("float32", gpus=0) == "float32"


def test_runs_recorded_before_the_option_resume_in_float32():
    old = TrainConfig(data="d", out="o").to_dict()
    del old["precision"]
    assert TrainConfig.from_dict(old).precision == "float32"
    assert TrainConfig(data="d", out="o").precision == "auto"


def test_a_cast_model_computes_in_bfloat16_on_the_same_float32_weights():
    model = models.build("small")
    model.get_layer("block1_conv1").trainable = False
    mixed = precision.cast(model, "bfloat16", models.OUTPUT)
    assert precision.policy_of(mixed) == "mixed_bfloat16"
    assert mixed.get_layer(models.OUTPUT).dtype_policy.name == "float32" and mixed.output.dtype == "float32"
    for before, after in zip(model.get_weights(), mixed.get_weights(), strict=True):
        assert after.dtype == np.float32
        np.testing.assert_array_equal(before, after)
    assert not mixed.get_layer("block1_conv1").trainable and mixed.get_layer("block1_conv2").trainable
    faces = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype(np.float32)
    exact, rounded = model.predict(faces, verbose=0), mixed.predict(faces, verbose=0)
    assert not np.array_equal(exact, rounded)  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(rounded, exact, atol=0.02)
    back = precision.cast(mixed, "float32", models.OUTPUT)
    np.testing.assert_allclose(back.predict(faces, verbose=0), exact, atol=1e-6)


def test_a_cast_transfer_model_casts_its_backbone_and_keeps_it_frozen():
    model = models.build("vgg16", weights=None, input_size=32)
    models.set_backbone_trainable(model, "vgg16", 1)
    mixed = precision.cast(model, "bfloat16", models.OUTPUT)
    backbone = mixed.get_layer(models.BACKBONE)
    assert precision.policy_of(backbone) == "mixed_bfloat16"
    assert [layer.trainable for layer in backbone.layers] == [
        layer.trainable for layer in model.get_layer(models.BACKBONE).layers
    ]
    assert backbone.get_layer("block5_conv1").trainable and not backbone.get_layer("block1_conv1").trainable
