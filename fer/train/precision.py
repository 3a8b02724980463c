"""Training precision: float32, or mixed bfloat16 where the hardware computes it natively.

Under ``bfloat16`` (Keras' ``mixed_bfloat16`` policy) layers compute in bfloat16 and keep
their variables in float32, so checkpoints, averaging and bundles hold the same float32
weights either way; the output layer computes in float32 so the softmax and the loss keep
their precision. On CPUs with AVX512-BF16 ``wide`` trains faster in bfloat16 (docs/benchmarks.md#training-throughput,
``python benchmarks/train_throughput.py --arch wide``). A bundle is always
written in float32 (:func:`cast`), so labelling and LiteRT conversion never see the policy.
"""

from __future__ import annotations

from pathlib import Path

from fer.train.models import OUTPUT

#: ``auto``: bfloat16 on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX), float32
#: elsewhere, GPUs included (not every GPU computes bfloat16 fast: ask for it on those that do).
PRECISIONS = ("auto", "float32", "bfloat16")
#: The Keras dtype policy of each resolved precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
#: /proc/cpuinfo flags of x86 CPUs with bfloat16 dot products (Zen 4+, Cooper Lake, Sapphire Rapids+).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this machine's CPUs compute bfloat16 dot products natively (False where unknown)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve(precision: str, gpus: float) -> str:
    """``precision`` with ``auto`` decided for this worker: ``float32`` or ``bfloat16``."""
    if precision != "auto":
        return precision
    return "bfloat16" if not gpus and cpu_has_bf16() else "float32"


def policy_of(model) -> str:
    """The dtype policy a model's layers compute in (its first layer with weights)."""
    return next(layer.dtype_policy.name for layer in model.layers if layer.weights)


def computes_in(model, precision: str) -> bool:
    """Whether ``model``'s layers compute in ``precision`` (resolved)."""
    return policy_of(model) == POLICIES[precision]


def use(precision: str) -> None:
    """Make ``precision`` (resolved) the policy of every model built or cloned from now on in this process."""
    from fer._tf import keras

    keras.mixed_precision.set_global_policy(POLICIES[precision])


def cast(model, precision: str, output: str = OUTPUT):
    """A copy of ``model`` with its layers computing in ``precision`` (resolved) and the layer
    named ``output`` in float32: the same weights and trainable flags, no optimizer."""
    from fer._tf import keras

    policy = POLICIES[precision]

    def clone(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name == output else policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    for old, new in zip(_all_layers(model), _all_layers(copy), strict=True):
        new.trainable = old.trainable
    return copy


def _all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers after the nested model, in order."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out
