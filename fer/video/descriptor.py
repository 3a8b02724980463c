"""Face descriptors: a 128-number vector per face, near for one person's faces, far for two people's.

The network is dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``, weights in
the public domain) as face-api.js ported it (MIT): the weights ship in ``fer/models/descriptor`` in
that port's TensorFlow.js format (uint8 per tensor with a scale and a minimum) and, converted once
by :func:`convert`, as a LiteRT file that fer runs on CPUs. The network is rebuilt here from the
port's definition (``src/faceRecognitionNet/`` of face-api.js): a 7x7 stride-2 convolution,
a 3x3 max-pool, residual blocks at 32/64/128/256 channels (per-channel scale layers in place of
batch norm, folded into the convolutions here), a global average pool and a 256x128 matrix.

Two faces are one person when their descriptors are closer than about 0.6 (Euclidean; dlib's
threshold). Descriptors are biometric data: fer keeps them inside a labelling output.

Input: :data:`CHIP` x :data:`CHIP` RGB chips made by :func:`chip` from a frame and a face's
landmarks, the way face-api.js crops faces for this network (``FaceLandmarks.alignDlib``: a square
of side ``eye-to-mouth / 0.45`` around the centre of the eyes and the mouth), but rotated to level
the eyes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fer.errors import FerError

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "descriptor"
#: The TensorFlow.js files of face-api.js's ``face_recognition_model`` (the source of truth).
TFJS_MANIFEST = MODEL_DIR / "face_recognition_model-weights_manifest.json"
#: The LiteRT conversion of the same network (:func:`convert`).
LITERT_MODEL = MODEL_DIR / "descriptor.tflite"
CHIP = 150
DIMS = 128
#: dlib's input layer: the RGB mean subtracted, then divided by 256 (face-api.js does the same;
#: @vladmandic/face-api divides by 255, which moves descriptors by ~0.01).
MEAN_RGB = (122.782, 117.001, 104.298)
SCALE = 256.0
#: Where face-api.js's dlib crop puts the centre of the eyes and mouth (fractions of the side),
#: and the mean eye-to-mouth distance as a fraction of the side.
CENTRE = (0.5, 0.43)
EYE_MOUTH = 0.45
#: Two descriptors closer than this are one person (dlib's threshold, LFW 99.38%).
SAME_PERSON = 0.6


def read_tfjs(manifest: str | Path) -> dict[str, np.ndarray]:
    """The weights of a TensorFlow.js model (manifest + binary shards), dequantised to float32
    as TensorFlow.js does (``q * scale + min`` for uint8 tensors)."""
    manifest = Path(manifest)
    groups = json.loads(manifest.read_text())
    weights: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        sizes = [math.prod(w["shape"]) * (1 if w.get("quantization") else 4) for w in group["weights"]]
        if sum(sizes) != len(data):
            raise FerError(f"{manifest}: {len(data)} bytes of weights, the manifest describes {sum(sizes)}")
        offset = 0
        for spec, size in zip(group["weights"], sizes, strict=True):
            n = math.prod(spec["shape"])
            quant = spec.get("quantization")
            if not quant:
                value = np.frombuffer(data, "<f4", n, offset).copy()
            elif quant["dtype"] == "uint8":
                q = np.frombuffer(data, np.uint8, n, offset).astype(np.float32)
                value = q * np.float32(quant["scale"]) + np.float32(quant["min"])
            else:
                raise FerError(f"{manifest}: {spec['name']}: {quant['dtype']} quantisation is not read")
            weights[spec["name"]] = value.reshape(spec["shape"])
            offset += size
    return weights


#: The residual blocks in order: (name, downsampling).
BLOCKS = (
    ("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
    ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
    ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
    ("conv256_down", True), ("conv256_1", False), ("conv256_2", False),
    ("conv256_down_out", True),
)  # fmt: skip


def build_network(weights: dict[str, np.ndarray]):
    """The descriptor network as a tf-keras model: ``(n, 150, 150, 3)`` RGB 0-255 -> ``(n, 128)``."""
    from fer._tf import keras, tf

    def conv(x, name: str, stride: int = 1, padding: str = "same", relu: bool = True):
        # face-api.js: conv + bias, then a per-channel scale layer (x * w + b): folded into one conv.
        w, b = weights[f"{name}/conv/filters"], weights[f"{name}/conv/bias"]
        s, c = weights[f"{name}/scale/weights"], weights[f"{name}/scale/biases"]
        layer = keras.layers.Conv2D(w.shape[-1], w.shape[:2], strides=stride, padding=padding)
        x = layer(x)
        layer.set_weights([w * s, b * s + c])
        return keras.layers.ReLU()(x) if relu else x

    def block(x, name: str, down: bool):
        if not down:
            out = conv(conv(x, f"{name}/conv1"), f"{name}/conv2", relu=False)
            return keras.layers.ReLU()(keras.layers.Add()([out, x]))
        out = conv(x, f"{name}/conv1", stride=2, padding="valid")
        out = conv(out, f"{name}/conv2", relu=False)
        short = keras.layers.AveragePooling2D(2, 2, padding="valid")(x)
        if short.shape[1] != out.shape[1]:  # an odd side: face-api.js pads the branch at the bottom right
            out = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(out)
        if short.shape[-1] != out.shape[-1]:  # twice the channels: zeros appended to the shortcut
            short = keras.layers.Lambda(lambda t: tf.concat([t, tf.zeros_like(t)], axis=-1))(short)
        return keras.layers.ReLU()(keras.layers.Add()([out, short]))

    inputs = keras.Input((CHIP, CHIP, 3), dtype="float32")
    x = keras.layers.Lambda(lambda t: (t - tf.constant(MEAN_RGB, tf.float32)) / SCALE)(inputs)
    x = conv(x, "conv32_down", stride=2, padding="valid")
    x = keras.layers.MaxPooling2D(3, 2, padding="valid")(x)
    for name, down in BLOCKS:
        x = block(x, name, down)
    x = keras.layers.GlobalAveragePooling2D()(x)
    fc = keras.layers.Dense(DIMS, use_bias=False, name="fc")
    x = fc(x)
    fc.set_weights([weights["fc"]])
    return keras.Model(inputs, x, name="face_descriptor")


def convert(manifest: str | Path = TFJS_MANIFEST, out: str | Path = LITERT_MODEL) -> Path:
    """Write the LiteRT file of the network in ``manifest`` (float16 weights: half the size of
    float32, descriptors within ~1e-3 of the float network)."""
    from fer._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(build_network(read_tfjs(manifest)))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    out = Path(out)
    out.write_bytes(converter.convert())
    return out


class Describer:
    """Descriptors for batches of chips, on LiteRT (``runtime="litert"``, CPUs) or on tf-keras
    built from the TensorFlow.js weights (``"keras"``: float, GPUs). Loads once; call it on
    ``(n, 150, 150, 3)`` uint8 RGB chips to get ``(n, 128)`` float32 descriptors."""

    def __init__(self, runtime: str = "litert", threads: int = 1):
        if runtime == "keras":
            model = build_network(read_tfjs(TFJS_MANIFEST))
            self._run = lambda x: model(x, training=False).numpy()
            return
        if runtime != "litert":
            raise FerError(f"descriptor runtime: {runtime!r} is not one of litert, keras")
        from fer.bundle import LiteModel

        self._run = LiteModel(LITERT_MODEL, threads)

    def __call__(self, chips: np.ndarray, *, mirror: bool = False) -> np.ndarray:
        """Descriptors of ``chips``; with ``mirror``, each averaged with its mirror image's
        (dlib's "jitter" in its simplest form: LFW-named pairs 97.60% -> 97.95% at 0.6, twice the cost)."""
        if len(chips) == 0:
            return np.zeros((0, DIMS), np.float32)
        x = np.ascontiguousarray(chips, np.float32)
        if not mirror:
            return self._run(x)
        both = self._run(np.concatenate([x, x[:, :, ::-1]]))
        return (both[: len(x)] + both[len(x) :]) / 2


def chip_alignment(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 affine matrix from frame pixels to a face's :data:`CHIP`-px chip, from its five
    landmarks (:data:`fer.schema.LANDMARKS` order): eyes level, the centre of the eyes and the
    mouth at :data:`CENTRE`, their mean distance :data:`EYE_MOUTH` of the side."""
    marks = landmarks.reshape(5, 2).astype(np.float64)
    eye_l, eye_r, mouth = marks[0], marks[1], marks[3:5].mean(axis=0)
    ref = (eye_l + eye_r + mouth) / 3
    eye_mouth = (np.hypot(*(mouth - eye_l)) + np.hypot(*(mouth - eye_r))) / 2
    scale = EYE_MOUTH * CHIP / max(eye_mouth, 1e-6)
    dx, dy = eye_r - eye_l
    angle = math.atan2(dy, dx)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    m[:, 2] = np.array(CENTRE) * CHIP - m[:, :2] @ ref
    return m


def chip(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A face's :data:`CHIP` x :data:`CHIP` uint8 RGB chip from a BGR (or grey) frame."""
    import cv2

    from fer.video.align import prescaled

    m = chip_alignment(landmarks)
    scale = math.hypot(m[0, 0], m[0, 1])
    if scale < 0.5:  # shrinking more than 2x: area-average first (no aliasing)
        frame, m = prescaled(frame, m, scale, CHIP, grey=False)
    out = cv2.warpAffine(frame, m, (CHIP, CHIP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB if out.ndim == 2 else cv2.COLOR_BGR2RGB)
