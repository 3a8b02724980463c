"""The face descriptor: exact to face-api.js, chips cut the way it expects, one person near, two far."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.errors import FerError
from fer.video import descriptor
from fer.video.faces import create_detector

from .conftest import SAMPLES

DATA = Path(__file__).parent / "data" / "descriptor"
REFERENCE = json.loads((DATA / "face_api_js.json").read_text())


def _chips() -> tuple[list[str], np.ndarray]:
    names = sorted(REFERENCE)
    chips = np.stack([cv2.cvtColor(cv2.imread(str(DATA / n)), cv2.COLOR_BGR2RGB) for n in names])
    return names, chips


@pytest.mark.parametrize(("runtime", "tolerance"), [("keras", 1e-4), ("litert", 2e-3)])
def test_descriptors_equal_face_api_js(runtime, tolerance):
    names, chips = _chips()
    got = descriptor.Describer(runtime)(chips)
    want = np.array([REFERENCE[n] for n in names], np.float32)
    assert got.shape == (len(names), descriptor.DIMS)
    distance = np.linalg.norm(got - want, axis=1)
    assert distance.max() < tolerance, dict(zip(names, distance.round(6), strict=True))


def test_weights_are_read_as_tfjs_stores_them(tmp_path):
    """uint8 tensors are q * scale + min, float32 ones raw, in manifest order; a short file is refused."""
    quant = {"dtype": "uint8", "scale": 0.5, "min": -1.0}
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [2, 2], "dtype": "float32", "quantization": quant},
        {"name": "b", "shape": [3], "dtype": "float32"},
    ]}]  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    (tmp_path / "w.bin").write_bytes(bytes([0, 1, 2, 255]) + np.array([1.5, -2.0, 3.25], "<f4").tobytes())
    weights = descriptor.read_tfjs(tmp_path / "m.json")
    np.testing.assert_array_equal(weights["a"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_array_equal(weights["b"], [1.5, -2.0, 3.25])
    (tmp_path / "w.bin").write_bytes(bytes([0, 1, 2, 255]))
    with pytest.raises(FerError, match="bytes of weights"):
        descriptor.read_tfjs(tmp_path / "m.json")


def _frame_chip(name: str, index: int, *, mirror: bool = False, scale: float = 1.0) -> np.ndarray:
    cap = cv2.VideoCapture(str(SAMPLES / name))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    assert ok
    if mirror:
        frame = frame[:, ::-1].copy()
    if scale != 1.0:
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    det = max(create_detector("yunet")(frame), key=lambda d: d.size)
    return descriptor.chip(frame, det.landmarks)


def test_chips_put_the_face_where_the_network_expects_it():
    """The committed chips were cut by ``chip``: cutting them again from the clip gives the same pixels
    (within the decoder's rounding), and a mirrored or 3x smaller frame gives the same person."""
    names, chips = _chips()
    again = _frame_chip("single_face.mp4", 0)
    assert np.abs(again.astype(int) - chips[0].astype(int)).mean() < 2.0
    describe = descriptor.Describer()
    ref, mirrored, small = describe(np.stack([chips[0], _frame_chip("single_face.mp4", 0, mirror=True),
                                              _frame_chip("single_face.mp4", 0, scale=1 / 3)]))  # fmt: skip
    assert np.linalg.norm(ref - mirrored) < 0.3
    assert np.linalg.norm(ref - small) < 0.3


def test_one_person_is_near_and_two_are_far():
    names, chips = _chips()
    d = descriptor.Describer()(chips)
    same = np.linalg.norm(d[0] - d[1])  # single_face.mp4, two frames
    other = np.linalg.norm(d[0] - d[3])  # the carphone man
    assert same < descriptor.SAME_PERSON < other
