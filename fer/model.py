"""The model bundle: the one format in which fer stores a trained emotion model.

A bundle is a directory::

    BUNDLE/
      model.json    # metadata, see below
      model.keras   # the tf-keras model, without optimizer state

``model.json`` holds ``format`` (``"fer-model"``), ``format_version``, ``id`` (a hash of
the weights' values, see :func:`weights_id`: what "the same model" means for re-runs), ``name``, ``labels`` in output
order, ``input`` (size, channels, dtype, value range: the model normalises inside),
``architecture``, ``params``, ``training`` (config, command, wall time, data
fingerprints, class counts), ``validation`` (accuracy, macro-F1, per-class
precision/recall/F1, confusion matrix, see :meth:`fer.metrics.Scores.to_dict`),
``fer_version`` and ``created``.

:func:`load` returns an :class:`EmotionModel` whose :meth:`~EmotionModel.predict` every
other part of fer uses.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer import __version__
from fer.errors import FerError
from fer.image import to_faces
from fer.labels import EMOTIONS, FACE_SIZE
from fer.registry import Registry

BUNDLE_FORMAT = "fer-model"
FORMAT_VERSION = 1
META_FILE = "model.json"
MODEL_FILE = "model.keras"
#: Test-time augmentation: one decorated function per mode, from a batch of faces to the
#: views whose predictions are averaged; ``passes`` is the classifier's cost in forward passes.
TTA = Registry("test-time augmentation", option="--tta")

#: Where the model shipped with the package lives.
DEFAULT_BUNDLE = Path(__file__).parent / "models" / "default"


def input_spec() -> dict:
    """The ``input`` entry of every bundle this version writes."""
    return {
        "height": FACE_SIZE,
        "width": FACE_SIZE,
        "channels": 1,
        "dtype": "uint8",
        "range": [0, 255],
        "normalisation": "inside the model",
    }


def read_meta(path: str | Path) -> dict:
    """Read and check a bundle's ``model.json`` without loading TensorFlow.

    Raises:
        FerError: the directory is not a bundle, or its format version is unknown.
    """
    path = Path(path)
    meta_path = path / META_FILE
    if not path.exists():
        raise FerError(f"no such model bundle: {path}")
    if not meta_path.is_file():
        raise FerError(f"{path} is not a model bundle (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FerError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise FerError(f"{meta_path}: not a fer model bundle (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise FerError(
            f"{path}: bundle format version {version!r} is not supported by fer {__version__} "
            f"(it reads version {FORMAT_VERSION}); upgrade fer or re-export the model"
        )
    if list(meta.get("labels", [])) != list(EMOTIONS):
        raise FerError(f"{meta_path}: labels {meta.get('labels')} differ from fer's {list(EMOTIONS)}")
    return meta


def resolve(path: str | Path | None) -> Path:
    """The bundle to use: ``path``, or the shipped default model when ``path`` is None."""
    if path is not None:
        return Path(path)
    if not (DEFAULT_BUNDLE / META_FILE).is_file():
        raise FerError("no default model is installed with this fer; pass --model BUNDLE")
    return DEFAULT_BUNDLE


@dataclass
class EmotionModel:
    """A loaded bundle: metadata plus a ``predict`` that maps faces to probabilities."""

    path: Path
    meta: dict
    keras_model: object = field(repr=False)

    def __post_init__(self) -> None:
        from fer._tf import tf

        model = self.keras_model
        spec = tf.TensorSpec((None, FACE_SIZE, FACE_SIZE, 1), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.meta.get("architecture", "model"))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def predict(self, faces: np.ndarray | list[np.ndarray], *, tta: str = "none", batch_size: int = 256) -> np.ndarray:
        """Emotion probabilities ``(n, 7)`` for ``faces``.

        Args:
            faces: ``(n, 48, 48)`` uint8 grey faces, or images of any size or colour
                (they are converted as :func:`fer.image.to_face` says).
            tta: test-time augmentation: ``"none"``, ``"flip"`` (average with the mirror
                image: 2 passes) or ``"ten-crop"`` (four corner and one centre crop of
                7/8 size, each with its mirror: 10 passes).
            batch_size: faces per forward pass.
        """
        view = TTA.get(tta).factory
        faces = to_faces(faces)
        views = view(faces) if len(faces) else [faces]
        probs = np.mean([self._predict_raw(v, batch_size) for v in views], axis=0)
        return probs.astype(np.float32)

    def _predict_raw(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        out = np.zeros((len(faces), len(self.labels)), np.float32)
        for i in range(0, len(faces), batch_size):
            x = faces[i : i + batch_size, :, :, None].astype(np.float32)
            out[i : i + batch_size] = self._forward(x).numpy()
        return out


@TTA.register("none", "the face as it is (1 pass)", passes=1)
def _no_tta(faces: np.ndarray) -> list[np.ndarray]:
    return [faces]


@TTA.register("flip", "average with the mirror image (2 passes)", passes=2)
def _flip(faces: np.ndarray) -> list[np.ndarray]:
    return [faces, faces[:, :, ::-1]]


@TTA.register("ten-crop", "four corner and one centre crop of 7/8 size, each mirrored (10 passes)", passes=10)
def _ten_crop(faces: np.ndarray) -> list[np.ndarray]:
    import cv2

    s, c = FACE_SIZE, FACE_SIZE * 7 // 8
    offsets = [(0, 0), (0, s - c), (s - c, 0), (s - c, s - c), ((s - c) // 2, (s - c) // 2)]
    views = []
    for y, x in offsets:
        crops = faces[:, y : y + c, x : x + c]
        resized = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_LINEAR) for f in crops])
        views += [resized, resized[:, :, ::-1]]
    return views


#: The mode names, for callers that only list them.
TTA_MODES = TTA.names()


def load(path: str | Path | None = None) -> EmotionModel:
    """Load a bundle (the shipped default model when ``path`` is None).

    Raises:
        FerError: not a bundle, an unknown format version, or an unreadable model file.
    """
    path = resolve(path)
    meta = read_meta(path)
    from fer._tf import keras

    try:
        model = keras.models.load_model(str(path / MODEL_FILE), compile=False)
    except (OSError, ValueError) as exc:
        raise FerError(f"{path / MODEL_FILE}: cannot load the model ({exc})") from None
    return EmotionModel(path=path, meta=meta, keras_model=model)


def weights_id(keras_model) -> str:
    """A bundle's id: a hash of its weights' shapes, types and values, in layer order.

    The ``.keras`` archive holds a save date, so hashing the file would give the same weights
    a new id at every export (and relabel every video); the weights alone do not change.
    """
    digest = hashlib.sha256()
    for weight in keras_model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{weight.name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def save(keras_model, path: str | Path, meta: dict) -> Path:
    """Write a bundle atomically: into a temporary sibling directory, then renamed.

    ``meta`` holds the descriptive fields (``name``, ``architecture``, ``training``,
    ``validation``, ...); the format fields, labels, input spec, ``id``, ``params``,
    version and date are filled in here. An existing bundle at ``path`` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        keras_model.save(str(tmp / MODEL_FILE), save_format="keras_v3")
        full = {
            "format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "id": weights_id(keras_model),
            "labels": list(EMOTIONS),
            "input": input_spec(),
            "params": int(keras_model.count_params()),
            **meta,
            "fer_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        (tmp / META_FILE).write_text(json.dumps(full, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
