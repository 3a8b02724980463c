"""The model bundle: the one format in which fer stores a trained emotion model.

A bundle is a directory::

    BUNDLE/
      model.json    # metadata, see below
      model.keras   # the tf-keras model, without optimizer state
      model.tflite  # the network with int8 weights for LiteRT (optional: else tf-keras runs it)

An ensemble (format version 2) holds its member bundles instead, ``members/<i>-<id>/``,
listed in ``model.json``'s ``members`` (path, id, name and an optional TTA mode each); its
prediction is the mean of theirs.

``model.json`` holds ``format`` (``"fer-model"``), ``format_version``, ``id`` (a hash of
the weights' values, see :func:`weights_id`: what "the same model" means for re-runs), ``name``, ``labels`` in output
order, ``input`` (size, channels, dtype, value range: the model normalises inside),
``architecture``, ``params``, ``training`` (config, command, wall time, data
fingerprints, class counts), ``validation`` (accuracy, macro-F1, per-class
precision/recall/F1, confusion matrix, see :meth:`fer.metrics.Scores.to_dict`),
``fer_version`` and ``created``; a calibrated bundle (:mod:`fer.calibrate`) adds
``class_bias`` (per-class log-probability offsets its ``predict`` applies) and ``calibration``.

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
#: Ensembles (a ``members`` list) are version 2: a fer that reads only version 1 refuses them.
ENSEMBLE_FORMAT_VERSION = 2
META_FILE = "model.json"
MODEL_FILE = "model.keras"
#: The network with int8 weights for LiteRT (written by :func:`save`, see :func:`write_litert`;
#: bundles without it run on tf-keras).
LITERT_FILE = "model.tflite"
#: Test-time augmentation: one decorated function per mode, from a batch of faces to the
#: views whose predictions are averaged; ``passes`` is the classifier's cost in forward passes.
TTA = Registry("test-time augmentation", option="--tta")

#: Decimals of the class offsets ``model.json`` stores (``class_bias``).
BIAS_DECIMALS = 6

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
    if version not in (FORMAT_VERSION, ENSEMBLE_FORMAT_VERSION):
        raise FerError(
            f"{path}: bundle format version {version!r} is not supported by fer {__version__} "
            f"(it reads versions {FORMAT_VERSION} and {ENSEMBLE_FORMAT_VERSION}); upgrade fer or re-export the model"
        )
    if list(meta.get("labels", [])) != list(EMOTIONS):
        raise FerError(f"{meta_path}: labels {meta.get('labels')} differ from fer's {list(EMOTIONS)}")
    return meta


def check_tta(meta: dict, tta: str) -> None:
    """Check that ``tta`` is a mode and that it would change what the bundle ``meta`` predicts.

    Raises:
        FerError: an unknown mode, or a mode other than ``none`` for an ensemble whose every
            member runs a TTA of its own (the caller's mode would be silently ignored).
    """
    TTA.get(tta)
    own = [m.get("tta") for m in meta.get("members", ())]
    if tta != "none" and own and all(own):
        raise FerError(f"--tta {tta}: this model's members run their own TTA ({', '.join(own)}); use --tta none")


def resolve(path: str | Path | None) -> Path:
    """The bundle to use: ``path``, or the shipped default model when ``path`` is None."""
    if path is not None:
        return Path(path)
    if not (DEFAULT_BUNDLE / META_FILE).is_file():
        raise FerError("no default model is installed with this fer; pass --model BUNDLE")
    return DEFAULT_BUNDLE


#: Runtimes that run a bundle's network: one decorated class per runtime, built from a bundle
#: directory and a CPU thread count, called on ``(n, 48, 48, 1)`` float32 faces to give
#: ``(n, 7)`` probabilities.
RUNTIMES = Registry("runtime")


@RUNTIMES.register("keras", "the float network on tf-keras: exact, GPUs", batch=256)
class KerasNetwork:
    """A bundle's ``model.keras`` on tf-keras.

    ``threads`` is not applied: TensorFlow's thread pools are process-wide, so only the owner
    of the process sets them (the labelling actor does, :class:`fer.video.stages.Classify`).
    """

    def __init__(self, path: Path, threads: int):
        from fer._tf import keras, tf

        try:
            self.keras_model = keras.models.load_model(str(path / MODEL_FILE), compile=False)
        except (OSError, ValueError) as exc:
            raise FerError(f"{path / MODEL_FILE}: cannot load the model ({exc})") from None
        spec = tf.TensorSpec((None, FACE_SIZE, FACE_SIZE, 1), tf.float32)
        self._forward = tf.function(lambda x: self.keras_model(x, training=False), input_signature=[spec])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x).numpy()


# Batches of 32: LiteRT's speed per face is flat from 32 up, while its memory grows with the batch.
@RUNTIMES.register(
    "litert", "int8 weights on LiteRT: faster on CPUs (most with AVX-512 VNNI), 1/10 of the memory", batch=32
)
class LiteNetwork:
    """A bundle's ``model.tflite`` on LiteRT (TFLite's successor, without TensorFlow)."""

    def __init__(self, path: Path, threads: int):
        try:
            import ai_edge_litert  # noqa: F401
        except ImportError:
            raise FerError("--runtime litert: needs the ai-edge-litert package (pip install ai-edge-litert)") from None
        if not (path / LITERT_FILE).is_file():
            raise FerError(f"--runtime litert: {path} has no {LITERT_FILE} (a bundle written before LiteRT: use keras)")
        self._run = LiteModel(path / LITERT_FILE, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)


class LiteModel:
    """One ``.tflite`` file on LiteRT's interpreter: one input, one output, any batch size.
    ``threads`` 0 means every core (LiteRT's own default is one)."""

    def __init__(self, file: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(file), num_threads=threads or os.cpu_count())
        (self._input,), (self._output,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self._shape:  # ~1 ms to reallocate for another batch size
            self._interpreter.resize_tensor_input(self._input["index"], x.shape)
            self._interpreter.allocate_tensors()
            self._shape = x.shape
        self._interpreter.set_tensor(self._input["index"], x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"]).copy()


#: What ``runtime`` may be wherever a bundle is loaded: a runtime, or ``auto`` (:func:`runtime_for`).
RUNTIME_CHOICES = ("auto", *RUNTIMES.names())


def runtime_for(path: Path, runtime: str) -> str:
    """The runtime ``"auto"`` means for the bundle at ``path``: LiteRT when the bundle has its
    file and the package is installed, else tf-keras; any other value is returned as it is."""
    if runtime != "auto":
        return runtime
    import importlib.util

    has_litert = (path / LITERT_FILE).is_file() and importlib.util.find_spec("ai_edge_litert") is not None
    return "litert" if has_litert else "keras"


def resolved_runtime(path: str | Path | None, runtime: str = "auto") -> str:
    """The runtime :func:`load` runs the bundle at ``path`` on (an ensemble's: its members',
    sorted and comma-joined, as :attr:`EmotionModel.runtime` says), without loading it."""
    path = resolve(path)
    meta = read_meta(path)
    if "members" in meta:
        return ",".join(sorted({resolved_runtime(path / m["path"], runtime) for m in meta["members"]}))
    return runtime_for(path, runtime)


@dataclass
class EmotionModel:
    """A loaded bundle: metadata plus a ``predict`` that maps faces to probabilities.

    A single network (``members`` empty) runs on ``runtime``; an ensemble averages its
    members' probabilities, each member with its own TTA when its entry names one.
    """

    path: Path
    meta: dict
    runtime: str = "keras"
    network: object = field(default=None, repr=False)
    members: list[tuple[EmotionModel, str | None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.meta.get("architecture", "model"))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    @property
    def keras_model(self):
        """The tf-keras model of a single network loaded with the ``keras`` runtime."""
        if self.members or self.runtime != "keras":
            raise FerError(f"{self.path}: no tf-keras model here (runtime {self.runtime}, {len(self.members)} members)")
        return self.network.keras_model

    def predict(
        self, faces: np.ndarray | list[np.ndarray], *, tta: str = "none", batch_size: int | None = None
    ) -> np.ndarray:
        """Emotion probabilities ``(n, 7)`` for ``faces``.

        Args:
            faces: ``(n, 48, 48)`` uint8 grey faces, or images of any size or colour
                (they are converted as :func:`fer.image.to_face` says).
            tta: test-time augmentation, one of :data:`TTA_MODES` (an ensemble member
                whose entry names its own uses that; see :func:`check_tta`).
            batch_size: faces per forward pass (default: the runtime's).
        """
        faces = to_faces(faces)
        check_tta(self.meta, tta)
        if self.members:
            probs = np.mean([m.predict(faces, tta=own or tta, batch_size=batch_size) for m, own in self.members], 0)
        else:
            view = TTA.get(tta).factory
            views = view(faces) if len(faces) else [faces]
            batch = batch_size or RUNTIMES.get(self.runtime).info["batch"]
            probs = np.mean([self._predict_raw(v, batch) for v in views], axis=0)
        if "class_bias" in self.meta:
            probs = reweighted(probs, np.asarray(self.meta["class_bias"]))
        return probs.astype(np.float32)

    def _predict_raw(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        out = np.zeros((len(faces), len(self.labels)), np.float32)
        for i in range(0, len(faces), batch_size):
            out[i : i + batch_size] = self.network(faces[i : i + batch_size, :, :, None].astype(np.float32))
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


#: ``shift``'s offset in pixels: 1/12 of the face, inside training's random shift (10%), and
#: what moves ``wide``'s central 40x40 window onto the corners of the 48x48 face.
SHIFT_PX = 4


@TTA.register("shift", "the face and four diagonal 4-px shifts of it, each mirrored (10 passes)", passes=10)
def _shift(faces: np.ndarray) -> list[np.ndarray]:
    # Shifted views with reflected borders are what training's augmentation shows the model
    # (ten-crop's 1.14x zoom is outside it); for a network that crops its centre (``wide``)
    # they are the published ten-crop exactly.
    d = SHIFT_PX
    padded = np.pad(faces, ((0, 0), (d, d), (d, d)), mode="reflect")
    s = FACE_SIZE
    views = []
    for y, x in [(d, d), (0, 0), (0, 2 * d), (2 * d, 0), (2 * d, 2 * d)]:
        view = padded[:, y : y + s, x : x + s]
        views += [view, view[:, :, ::-1]]
    return views


#: The mode names, for callers that only list them.
TTA_MODES = TTA.names()


def reweighted(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``probs`` with each class's log-probability shifted by ``bias`` and renormalised (a
    calibrated bundle's ``class_bias``, see :mod:`fer.calibrate`)."""
    weighted = probs * np.exp(bias)
    return weighted / weighted.sum(axis=1, keepdims=True)


def load(path: str | Path | None = None, *, runtime: str = "auto", threads: int = 0) -> EmotionModel:
    """Load a bundle (the shipped default model when ``path`` is None).

    Args:
        runtime: one of :data:`RUNTIMES`, or ``"auto"`` (see :func:`runtime_for`); an
            ensemble loads every member so.
        threads: CPU threads of the runtime (0: its default, every core).

    Raises:
        FerError: not a bundle, an unknown format version, or an unreadable model file.
    """
    if runtime not in RUNTIME_CHOICES:
        raise FerError(f"--runtime: must be one of {', '.join(RUNTIME_CHOICES)}; got {runtime!r}")
    path = resolve(path)
    meta = read_meta(path)
    if "members" in meta:
        members = [(load(path / m["path"], runtime=runtime, threads=threads), m.get("tta")) for m in meta["members"]]
        runtimes = ",".join(sorted({m.runtime for m, _ in members}))
        return EmotionModel(path=path, meta=meta, runtime=runtimes, members=members)
    chosen = runtime_for(path, runtime)
    return EmotionModel(path=path, meta=meta, runtime=chosen, network=RUNTIMES.get(chosen).factory(path, threads))


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
    """Write a bundle atomically (see :func:`_write_atomically`): the tf-keras model, the same
    network for LiteRT and ``model.json``.

    ``meta`` holds the descriptive fields (``name``, ``architecture``, ``training``,
    ``validation``, ...); the format fields, labels, input spec, ``id``, ``params``,
    version and date are filled in here. An existing bundle at ``path`` is replaced.
    """

    def write(tmp: Path) -> dict:
        keras_model.save(str(tmp / MODEL_FILE), save_format="keras_v3")
        write_litert(keras_model, tmp)
        head = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, "id": weights_id(keras_model)}
        return {**head, **_common_meta(), "params": int(keras_model.count_params()), **meta}

    return _write_atomically(path, write)


def save_ensemble(members: list[str | Path], path: str | Path, meta: dict, tta: list[str | None] | None = None) -> Path:
    """Write an ensemble bundle: copies of the ``members`` bundles under ``members/`` and a
    ``model.json`` listing them, each with its TTA mode (``tta``; None: the caller's).
    Its ``id`` is a hash of the members' ids and modes, its ``params`` their sum.
    """
    tta = tta or [None] * len(members)
    if len(members) < 2 or len(tta) != len(members):
        raise FerError(f"--ensemble: needs two or more bundles (and one TTA mode each when any); got {len(members)}")
    metas = [read_meta(m) for m in members]
    for mode in filter(None, tta):
        TTA.get(mode)

    def write(tmp: Path) -> dict:
        entries = []
        for i, (member, member_meta, mode) in enumerate(zip(members, metas, tta, strict=True)):
            where = f"members/{i}-{member_meta['id']}"
            shutil.copytree(member, tmp / where)
            entries.append({"path": where, "id": member_meta["id"], "name": member_meta.get("name"), "tta": mode})
        key = json.dumps([(e["id"], e["tta"]) for e in entries]).encode()
        head = {"format": BUNDLE_FORMAT, "format_version": ENSEMBLE_FORMAT_VERSION}
        return {**head, "id": hashlib.sha256(key).hexdigest()[:16], **_common_meta(),
                "params": sum(int(m.get("params", 0)) for m in metas), "members": entries, **meta}  # fmt: skip

    return _write_atomically(path, write)


def save_calibrated(source: str | Path, path: str | Path, bias: np.ndarray, updates: dict) -> Path:
    """Write a copy of the bundle ``source`` whose probabilities are reweighted per class by
    ``bias`` (added to any it had), its ``model.json`` updated with ``updates`` (how the bias
    was fitted, the new validation figures). Its id is new: its outputs differ from the source's.
    """
    meta = read_meta(source)
    total = np.asarray(meta.get("class_bias", np.zeros(len(EMOTIONS)))) + bias

    def write(tmp: Path) -> dict:
        for item in Path(source).iterdir():
            if item.name != META_FILE:
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        key = json.dumps([meta["id"], np.round(bias, BIAS_DECIMALS).tolist()]).encode()
        stored = np.round(total, BIAS_DECIMALS).tolist()
        return {**meta, "id": hashlib.sha256(key).hexdigest()[:16], "class_bias": stored, **updates}

    return _write_atomically(path, write)


def write_litert(keras_model, directory: Path) -> None:
    """Convert ``keras_model`` to ``directory/model.tflite`` with int8 weights (dynamic-range
    quantisation); a network LiteRT cannot hold is left to tf-keras, with a warning.

    Measured on FER-2013 val with v1's model: accuracy 66.82% against 66.87%, the same class for 99.7%
    of the faces, probabilities within 0.04 (``fer label --runtime keras`` gives the float network's exact
    figures); speeds per CPU: docs/benchmarks.md#classifier.
    """
    from fer import console
    from fer._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        (directory / LITERT_FILE).write_bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; tf-keras still runs it
        console.warn(f"{directory}: no LiteRT copy of this model ({exc}); it runs on tf-keras")


def _common_meta() -> dict:
    return {"labels": list(EMOTIONS), "input": input_spec()}


def _write_atomically(path: str | Path, write) -> Path:
    """Build a bundle in a temporary sibling directory with ``write(tmp) -> meta``, write its
    ``model.json`` (stamped with fer's version and the date), then move it to ``path``: a
    bundle already there is swapped out in one step (:func:`exchange`), never first deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        meta = {**write(tmp), "fer_version": __version__,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if not path.exists():
            os.replace(tmp, path)
        elif not exchange(tmp, path):  # no atomic swap here: the old one aside, the new one in
            aside = tmp.with_name(tmp.name + ".old")
            os.replace(path, aside)
            os.replace(tmp, path)
            shutil.rmtree(aside)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a swap: the old bundle
    return path


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's ``renameat2(RENAME_EXCHANGE)``), so a reader finds
    one or the other at each, never nothing; False where the system or filesystem cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
