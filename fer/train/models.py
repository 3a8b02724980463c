"""The architecture registry: every model fer can train, by name.

Every model takes a batch of raw 48x48 grey faces (float32 values in 0..255, shape
``(n, 48, 48, 1)``) and returns class probabilities in :data:`fer.labels.EMOTIONS` order.
Normalisation, resizing and grey-to-RGB mapping are layers inside the model, so a saved
model needs nothing but the raw face to predict, and the bundle format stays the same
for every architecture.

Only built-in tf-keras layers are used, so saved models load without custom objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer.errors import FerError
from fer.labels import FACE_SIZE, NUM_CLASSES
from fer.registry import Entry, Registry

if TYPE_CHECKING:
    from fer._tf import keras

#: Name of the pretrained backbone sub-model inside a transfer-learning model.
BACKBONE = "backbone"
#: Name of the output layer (class probabilities) of every architecture.
OUTPUT = "probs"


#: Every architecture: one decorated builder ``(inputs, *, weights, input_size, dropout) ->
#: outputs`` each, with ``transfer`` (a pretrained backbone) and, for those, ``top_blocks``
#: (layer-name prefixes of the backbone's top blocks, top first, for fine-tuning).
ARCHITECTURES = Registry("architecture", option="--arch")
#: Pixels cut from each side of the 48x48 face by ``wide``: the published recipe's 40-px crops.
CROP_MARGIN = 4


def spec(arch: str) -> Entry:
    """Look up an architecture, with a one-line error naming the known ones."""
    return ARCHITECTURES.get(arch)


def is_transfer(arch: str) -> bool:
    """Whether ``arch`` fine-tunes a pretrained backbone."""
    return spec(arch).info["transfer"]


def build(
    arch: str,
    *,
    weights: str | None = None,
    input_size: int = 96,
    dropout: float = 0.4,
) -> keras.Model:
    """Build an untrained (or backbone-pretrained) model.

    Args:
        arch: a key of :data:`ARCHITECTURES`.
        weights: transfer models only: ``"imagenet"`` (downloaded by Keras), ``None``
            (random init) or the path of a local Keras weights file for the backbone
            without its top (``*_notop.h5``).
        input_size: transfer models only: faces are upscaled to this size inside the model.
        dropout: dropout rate before the classifier.
    """
    from fer._tf import keras

    entry = spec(arch)
    if not entry.info["transfer"] and weights not in (None, "none"):
        raise FerError(f"--weights applies to transfer architectures only, not {arch!r}")
    inputs = keras.Input((FACE_SIZE, FACE_SIZE, 1), name="face")
    outputs = entry.factory(inputs, weights=weights, input_size=input_size, dropout=dropout)
    return keras.Model(inputs, outputs, name=entry.name)


def _layers():
    from fer._tf import keras

    return keras.layers


def _conv_block(x, filters: int, convs: int, dropout: float, name: str):
    layers = _layers()
    for i in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x) if dropout else x


def _classifier(x, dropout: float, hidden: int):
    layers = _layers()
    x = layers.Dense(hidden, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    # float32 under any dtype policy: the softmax and the loss keep their precision (fer.train.precision).
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name=OUTPUT)(x)


@ARCHITECTURES.register("small", "fast small CNN for CPUs (~0.3M parameters)", transfer=False)
def _small(inputs, *, dropout: float, **_):
    layers = _layers()
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, filters in enumerate((32, 64, 128)):
        x = _conv_block(x, filters, 2 if i < 2 else 1, 0.1, f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return _classifier(x, dropout, 128)


@ARCHITECTURES.register("deep", "strong VGG-style CNN for 48x48 faces (~2M parameters)", transfer=False)
def _deep(inputs, *, dropout: float, **_):
    layers = _layers()
    # Four VGG blocks take 48 -> 3 pixels; widths grow as resolution falls so that each
    # block costs about the same, which keeps the network trainable on CPUs.
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, filters in enumerate((32, 64, 128, 256)):
        x = _conv_block(x, filters, 2, 0.1 + 0.05 * i, f"block{i + 1}")
    x = layers.Flatten(name="flatten")(x)
    return _classifier(x, dropout, 256)


def _cropped_vgg(inputs, widths: tuple[int, ...], hidden: int, dropout: float):
    """Four VGG blocks of ``widths`` on the central 40x40 of the face, then a ``hidden``-unit classifier.

    The published VGG recipe trains on random 40-px crops and tests on the central one (Khaireddin & Chen
    2021): the augmentation's random shift followed by this fixed central crop is a random crop, and at
    test time the crop is the central one. 40 px also cuts the cost of each convolution by 30%.
    """
    layers = _layers()
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Cropping2D(CROP_MARGIN, name="centre_crop")(x)
    for i, filters in enumerate(widths):
        x = _conv_block(x, filters, 2, 0.1 + 0.05 * i, f"block{i + 1}")
    x = layers.Flatten(name="flatten")(x)
    return _classifier(x, dropout, hidden)


@ARCHITECTURES.register("wide", "deep at 1.5x the width, on the central 40x40 (~3.4M parameters)", transfer=False)
def _wide(inputs, *, dropout: float, **_):
    return _cropped_vgg(inputs, (48, 96, 192, 384), 512, dropout)


@ARCHITECTURES.register(
    "vggnet", "the published VGG variant's widths, on the central 40x40 (~6.8M parameters)", transfer=False
)
def _vggnet(inputs, *, dropout: float, **_):
    # Khaireddin & Chen 2021's widths (64-512 channels, 73.28% on FER-2013's test split): `wide`'s layout at
    # 1.33x its width, ~1.8x its multiply-adds. Their 4096-unit classifier is cut to 1024: its 25M weights
    # would be most of the network's size, and `wide`'s 512 units do not limit it.
    return _cropped_vgg(inputs, (64, 128, 256, 512), 1024, dropout)


@ARCHITECTURES.register(
    "vgg16",
    "keras.applications VGG16 backbone, grey upscaled to --input-size",
    transfer=True,
    top_blocks=("block5", "block4", "block3"),
)
def _vgg16(inputs, *, weights: str | None, input_size: int, dropout: float):
    return _transfer_head("vgg16", inputs, weights=weights, input_size=input_size, dropout=dropout)


@ARCHITECTURES.register(
    "resnet50v2",
    "keras.applications ResNet50V2 backbone, grey upscaled to --input-size",
    transfer=True,
    top_blocks=("conv5", "conv4", "conv3"),
)
def _resnet50v2(inputs, *, weights: str | None, input_size: int, dropout: float):
    return _transfer_head("resnet50v2", inputs, weights=weights, input_size=input_size, dropout=dropout)


# Backbone constructors and their input preprocessing expressed as layers, so the saved
# model carries it. VGG16 expects caffe-style BGR mean subtraction (the channels are
# equal for grey input, so only the means matter); ResNet50V2 expects [-1, 1].
_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


def _backbone(name: str, weights: str | None, size: int):
    from fer._tf import keras

    apps = keras.applications
    ctor = {"vgg16": apps.VGG16, "resnet50v2": apps.ResNet50V2}[name]
    w = None if weights in (None, "none") else weights
    try:
        model = ctor(include_top=False, weights=w, input_shape=(size, size, 3))
    except (OSError, ValueError) as exc:
        raise FerError(f"cannot load {name} weights {weights!r}: {exc}") from None
    model._name = BACKBONE  # a stable name to find it by when freezing and unfreezing
    return model


def _transfer_head(name: str, inputs, *, weights: str | None, input_size: int, dropout: float):
    layers = _layers()
    if input_size < 32:
        raise FerError(f"--input-size must be at least 32 for {name}, got {input_size}")
    x = layers.Resizing(input_size, input_size, interpolation="bilinear", name="upscale")(inputs)
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if name == "vgg16":
        x = layers.Normalization(mean=_VGG_MEAN_BGR, variance=(1.0, 1.0, 1.0), name="caffe_norm")(x)
    else:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="tf_norm")(x)
    backbone = _backbone(name, weights, input_size)
    # training=False keeps the backbone's BatchNormalization in inference mode even when
    # its top blocks are unfrozen: the usual recipe for fine-tuning on small data.
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return _classifier(x, dropout, 256)


def set_backbone_trainable(model, arch: str, top_blocks: int) -> None:
    """Freeze the backbone (``top_blocks=0``) or unfreeze its top ``top_blocks`` blocks.

    BatchNormalization layers stay frozen. A no-op for models trained from scratch.
    Recompile the model after calling this.
    """
    if not is_transfer(arch):
        return
    layers = _layers()
    backbone = model.get_layer(BACKBONE)
    prefixes = spec(arch).info["top_blocks"][:top_blocks]
    backbone.trainable = top_blocks > 0
    for layer in backbone.layers:
        layer.trainable = (
            top_blocks > 0 and layer.name.startswith(prefixes) and not isinstance(layer, layers.BatchNormalization)
        )


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of ``model`` for one face: its convolutions (dense
    and depthwise) and dense layers, nested models included; what a face costs wherever it
    runs (normalisation, pooling and activations add under 1%)."""
    from fer._tf import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            total += kh * kw * cin * mult * _spatial(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            total += kh * kw * cin * cout * _spatial(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0] * layer.kernel.shape[1])
    return int(total)


def _spatial(layer) -> int:
    """Output positions of a 2-D layer (height x width of its output)."""
    shape = layer.output.shape
    return int(shape[1] * shape[2])
