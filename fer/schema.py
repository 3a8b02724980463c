"""The timeline schema: the one definition of what ``fer label`` writes and ``fer.timelines`` reads.

One Parquet file per video, ``OUT/timelines/<video_id>.parquet``, one row per (sampled
frame, face); a frame with no face has one row with ``face_id == NO_FACE`` and nulls (NaN)
in the face columns, so coverage can be checked. Columns:

============  =========  ==========================================================
video_id      string     stable id derived from the input path (see fer.video.inputs)
video_path    string     the input path as given
frame         int64      frame index in the video (presentation order)
time_s        float64    presentation time from the container, in seconds
face_id       int32      face track id, stable within a video; -1 for no face
person        int32      the person a track belongs to within the video (fer.video.persons);
                         -1 for no face, a face never described, or --no-persons (schema 4)
x, y, w, h    float32    face box in displayed-frame pixels (NaN for no face)
score         float32    detection score
eye_left_x    float32    five landmarks in displayed-frame pixels, x and y each: eye_left,
 ...                     eye_right, nose, mouth_left, mouth_right (left/right as seen in
mouth_right_y            the image); NaN where the detector gives none (schema version 2)
emotion       string     dominant emotion (null for no face)
confidence    float32    its probability
angry ...     float32    one probability column per class, fer.labels.EMOTIONS order
============  =========  ==========================================================

File metadata key ``fer`` holds JSON: ``schema_version``, ``labels``, ``model`` (name,
id), ``detector``, ``sample_fps``, ``video`` (fps, size, frames, rotation, ...).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from fer.labels import EMOTIONS

#: 2 added the landmark columns, 3 the ``shot`` column, 4 ``person``; files of versions 1-3 still
#: read (the columns they lack come back null; :func:`fer.timelines.read` gives their rows shot 0
#: and person -1).
SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
TIMELINES_DIR = "timelines"
#: Per-video persons (``OUT/persons/<video_id>.parquet``, :data:`PERSONS_SCHEMA`): their face
#: descriptors, which are biometric data and never leave the output.
PERSONS_DIR = "persons"
#: A labelling output's run logs: ``run-<time>.json`` (the run's record) and ``run-<time>.log``
#: (what Ray and TensorFlow printed).
LOGS_DIR = "logs"
METADATA_KEY = b"fer"
NO_FACE = -1
#: ``person`` of a row without a face, or of a face never described.
NO_PERSON = -1
#: Face landmarks, left and right as seen in the image (a subject's right eye is ``eye_left``).
LANDMARKS = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARKS for axis in "xy")

TIMELINE_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("video_path", pa.string()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
        ("shot", pa.int32()),
        ("face_id", pa.int32()),
        ("person", pa.int32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("w", pa.float32()),
        ("h", pa.float32()),
        ("score", pa.float32()),
        *[(name, pa.float32()) for name in LANDMARK_COLUMNS],
        ("emotion", pa.string()),
        ("confidence", pa.float32()),
        *[(name, pa.float32()) for name in EMOTIONS],
    ]
)


#: Per-video aggregates beside each timeline (see fer.aggregates): one row per video
#: (``face_id == -1``, ``shot`` null: frames, seconds, presence), one per shot (``face_id == -1``:
#: the same, and its first/last sampled time) and one per face (its shot and person, first/last seen);
#: all carry the face rows' count, their seconds, seconds per dominant emotion
#: (``sec_<emotion>``) and probability sums (``sum_<emotion>``). Columns that do not apply
#: to a row are null.
AGGREGATES_DIR = "aggregates"
AGGREGATE_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("face_id", pa.int32()),
        ("shot", pa.int32()),
        ("person", pa.int32()),
        ("frames", pa.int64()),
        ("seconds", pa.float64()),
        ("face_frames", pa.int64()),
        ("face_seconds", pa.float64()),
        ("faces", pa.int64()),
        ("rows", pa.int64()),
        ("row_seconds", pa.float64()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        *[(f"sec_{name}", pa.float64()) for name in EMOTIONS],
        *[(f"sum_{name}", pa.float64()) for name in EMOTIONS],
    ]
)


#: One row per person of a video: its tracks (face ids), rows, first and last sampled time, the
#: mean descriptor of its tracks (:mod:`fer.video.descriptor`, 128 numbers) and its best-scored
#: view (frame, time, landmarks: where ``fer people`` cuts its picture).
PERSONS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("person", pa.int32()),
        ("face_ids", pa.list_(pa.int32())),
        ("rows", pa.int64()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("descriptor", pa.list_(pa.float32())),
        ("best_frame", pa.int64()),
        ("best_time_s", pa.float64()),
        ("best_landmarks", pa.list_(pa.float32())),
        # The video's persons seen in one frame with this one: never one identity (fer people).
        ("apart", pa.list_(pa.int32())),
    ]
)


def dominant(probs: np.ndarray, has_face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A timeline's ``emotion`` and ``confidence`` columns from its probabilities ``(n, 7)``:
    the most probable emotion and its probability, None and NaN on rows without a face."""
    scores = np.where(has_face[:, None], np.nan_to_num(probs), 0)
    best = scores.argmax(axis=1)
    emotion = np.where(has_face, np.asarray(EMOTIONS, dtype=object)[best], None)
    confidence = np.where(has_face, scores[np.arange(len(best)), best], np.nan).astype(np.float32)
    return emotion, confidence


def with_metadata(meta: dict) -> pa.Schema:
    """The timeline schema carrying ``meta`` (plus the schema version and labels)."""
    full = {"schema_version": SCHEMA_VERSION, "labels": list(EMOTIONS), **meta}
    return TIMELINE_SCHEMA.with_metadata({METADATA_KEY: json.dumps(full).encode()})


def read_metadata(schema: pa.Schema) -> dict:
    """The ``fer`` metadata of a timeline file's schema ({} when absent)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
