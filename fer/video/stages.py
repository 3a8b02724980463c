"""The Ray Data stages of the labelling pipeline, as functions and callable classes.

probe (task) -> decode + detect + crop (CPU actors) -> classify (actors, GPU when asked).

Decoded frames never leave the decode actor: only 48x48 crops, box rows and, about once
a second a face, its 128-number descriptor travel through the object store. Every stage
turns a failure into ``error`` rows instead of raising, so one bad video never stops the
others; a bug of fer's (:data:`INTERNAL_ERROR`) fails its videos and then the run (exit 70),
once the others are saved.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Iterator

import numpy as np

from fer.labels import EMOTIONS, FACE_SIZE
from fer.schema import LANDMARK_COLUMNS
from fer.video.decode import DecodeStats, Segment, is_still, iter_frames, sampled_frames
from fer.video.descriptor import DIMS
from fer.video.persons import DESCRIBE_EVERY_S, MIN_DESCRIBE_PX, PENDING
from fer.video.progress import MAX_TRIES, Reporter, attempt, settle
from fer.video.shots import SIGNATURE_LEN, changed, signature
from fer.video.windows import Scheduled

_NO_MARKS = np.full(len(LANDMARK_COLUMNS), np.nan, np.float32)
_NO_CROP = np.zeros((FACE_SIZE, FACE_SIZE), np.uint8)
_NO_SIGNATURE = np.zeros(SIGNATURE_LEN, np.uint8)
_NO_DESCRIPTOR = np.full(DIMS, np.nan, np.float32)
_ROW_FIELDS = ("frame", "time_s", "has_face", "box", "score", "landmarks", "crop", "signature", "descriptor", "quality")

#: Per-video fields every row carries, so the driver can finish a video from its rows.
VIDEO_FIELDS = ("video_id", "video_path", "n_segments", "fps", "width", "height", "rotation", "frames", "declared")


#: How a video's failure reason starts when a bug of fer's failed it (``fer label`` then exits 70).
INTERNAL_ERROR = "internal error"

#: Rows a decoder sends on at once (a frame's rows are never split): the classifier starts on
#: a segment's first faces while the rest of it is decoded, not after the whole segment.
CHUNK_ROWS = 128


class DecodeDetect:
    """map_batches actor: decode a segment's sampled frames, detect faces, crop them.

    Yields one row per face, or one row with ``has_face`` False for a frame without a
    face, in chunks of about :data:`CHUNK_ROWS` rows as decoding goes. Each row carries its
    place in the segment (``row``) and the rows of a segment's last chunk the segment's row
    count (``seg_rows``, -1 on the others): the driver's tags (:mod:`fer.video.protocol`).
    The chunks are the same on every try, so a replayed segment's rows are the same rows.
    The frames gone through (sampled or not) are reported to the run's progress ``counter``
    as decoding goes, not per segment. With ``persons``, faces are described about once a
    second (:mod:`fer.video.persons`): ``descriptor`` and ``quality``, NaN on other rows. A
    photo's faces are left for ``fer people`` to describe (:data:`~fer.video.persons.PENDING`),
    so that a folder of photos is labelled at the speed of its emotions.
    """

    def __init__(
        self,
        *,
        detector: str,
        min_face: int,
        sample_fps: float | None,
        margin: float,
        align: bool,
        detect_every: int = 1,
        persons: bool = False,
        counter=None,
        nice: int = 0,
    ):
        import cv2

        from fer.video.faces import create_detector

        # One actor per core: single-threaded decoding and OpenCV ops avoid oversubscription.
        cv2.setNumThreads(1)
        if nice:
            # Behind the classifier for the cores (see fer.video.engines.DECODER_NICE); only a
            # process of its own (a Ray actor's) is niced, never the caller's.
            os.nice(nice)
        self.detector = Scheduled(create_detector(detector, min_face=min_face), detect_every)
        self.last_signature: np.ndarray | None = None
        self.min_face = min_face
        self.sample_fps = sample_fps
        self.margin = margin
        self.align = align
        self.progress = Reporter(counter)
        self.counter = counter
        self.persons = persons
        self._describer = None  # loaded with the first face to describe: never for a folder of photos
        self.last_slot = -1
        self.still = False

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(batch["video_id"])):
            yield from self._segment({k: v[i] for k, v in batch.items()})

    def _detect(self, index: int, t: float, frame: np.ndarray, rows: dict[str, list]) -> None:
        """Add a frame's faces (or one no-face row) to ``rows``, each with the frame's signature
        (:mod:`fer.video.shots`)."""
        from fer.video.align import crop_face

        sig = signature(frame)
        cut = self.last_signature is not None and changed(self.last_signature, sig)
        self.last_signature = sig
        faces = [d for d in self.detector(frame, cut=cut, t=t) if d.size >= self.min_face]
        descriptors, quality = self._describe(frame, t, faces)
        for d, vector, q in zip(faces or [None], descriptors, quality, strict=True):
            rows["descriptor"].append(vector)
            rows["quality"].append(q)
            rows["signature"].append(sig)
            rows["frame"].append(index)
            rows["time_s"].append(t)
            rows["has_face"].append(d is not None)
            rows["box"].append((d.x, d.y, d.w, d.h) if d else (np.nan,) * 4)
            rows["score"].append(d.score if d else np.nan)
            rows["landmarks"].append(d.landmarks.ravel() if d else _NO_MARKS)
            rows["crop"].append(crop_face(frame, d, align=self.align, margin=self.margin) if d else _NO_CROP)

    def _describe(self, frame: np.ndarray, t: float, faces: list) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors and view qualities of ``faces`` (one NaN row for a frame without faces):
        computed for the faces big enough, at the first sampled frame of each
        :data:`~fer.video.persons.DESCRIBE_EVERY_S`, NaN otherwise."""
        from fer.video.descriptor import chip
        from fer.video.persons import view_quality

        n = max(1, len(faces))
        vectors, quality = np.tile(_NO_DESCRIPTOR, (n, 1)), np.full(n, np.nan, np.float32)
        slot = int(t // DESCRIBE_EVERY_S)
        if not self.persons or not faces or slot == self.last_slot:
            return vectors, quality
        self.last_slot = slot
        chosen = [i for i, d in enumerate(faces) if d.size >= MIN_DESCRIBE_PX and np.isfinite(d.landmarks).all()]
        if chosen and self.still:
            quality[chosen] = PENDING
        elif chosen:
            chips = np.stack([chip(frame, faces[i].landmarks) for i in chosen])
            if self._describer is None:
                from fer.video.descriptor import Describer

                self._describer = Describer(threads=1)
            vectors[chosen] = self._describer(chips, mirror=True)
            quality[chosen] = [view_quality(faces[i].landmarks, c) for i, c in zip(chosen, chips, strict=True)]
        return vectors, quality

    def _segment(self, seg: dict) -> Iterator[dict[str, np.ndarray]]:
        rows: dict[str, list] = {k: [] for k in _ROW_FIELDS}
        error = str(seg["error"])
        missing = sent = decoded = chunks = 0
        unit = f"{seg['video_id']}/{seg['segment']}"
        prev = None if np.isnan(seg["prev_ms"]) else float(seg["prev_ms"])
        if not error and attempt(self.counter, unit) > MAX_TRIES:
            error = (f"decoding died on each of its {MAX_TRIES} tries at segment {seg['segment']} (a crash in the "
                     "decoding library, or out of memory)")  # fmt: skip
            if seg["has_times"]:  # given up: its frames count as gone through, so progress still ends
                self.progress.add(frames=sampled_frames(np.asarray(seg["times_ms"]), prev, self.sample_fps))
                self.progress.flush()
        if not error:
            segment = Segment(
                str(seg["video_id"]), str(seg["video_path"]), int(seg["segment"]), int(seg["start"]),
                np.asarray(seg["times_ms"]) if seg["has_times"] else None, float(seg["fps"]), prev,
                bool(seg["seekable"]),
            )  # fmt: skip
            self.detector.reset()
            self.last_signature = None
            self.last_slot = -1
            self.still = self.persons and _still(segment.path)
            stats = DecodeStats()
            frames = iter_frames(segment, self.sample_fps, threads=1, stats=stats)
            while True:
                try:
                    index, t, frame = next(frames)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - a decoder crash fails this video only
                    error = f"decoding failed at segment {segment.index}: {exc}"
                    traceback.print_exc()
                    break
                self.progress.add(frames=1)  # sampled frames, as the probe counted them
                if len(rows["frame"]) >= CHUNK_ROWS:  # sent before this frame: the last chunk is never empty
                    yield _segment_rows(seg, rows, "", 0, last=False, sent=sent, chunk=chunks)
                    sent += len(rows["frame"])
                    chunks += 1
                    rows = {k: [] for k in _ROW_FIELDS}
                    _chaos(segment.path)
                decoded += 1
                try:
                    self._detect(index, t, frame, rows)
                except Exception as exc:  # noqa: BLE001 - a bug of ours: the video fails, and the run exits 70
                    # Raised out of the stage, it would be a block Ray Data drops (its videos failed as
                    # if their decoder had died); the driver raises it once every other video is saved.
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    error = (f"{INTERNAL_ERROR} detecting faces at frame {index}: {type(exc).__name__}: {exc} "
                             f"({where.filename}:{where.lineno})")  # fmt: skip
                    traceback.print_exc()
                    break
            expected = len(segment.times_ms) if segment.times_ms is not None else int(seg["declared"])
            missing = max(0, expected - stats.grabbed)  # a segment cut short: truncated or corrupt data
            if segment.times_ms is not None:  # what a failure or a short segment skipped
                planned = sampled_frames(segment.times_ms, segment.prev_ms, self.sample_fps)
                self.progress.add(frames=max(0, planned - decoded))
            self.progress.flush()
        settle(self.counter, unit)
        yield _segment_rows(seg, rows, error, missing, sent=sent, frames=decoded, chunk=chunks)

    @staticmethod
    def failed(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The rows of a batch of segments that failed before decoding (their ``error`` says why)."""
        outs = [_segment_rows({k: v[i] for k, v in batch.items()}, {}, str(batch["error"][i]), 0)
                for i in range(len(batch["video_id"]))]  # fmt: skip
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _still(path: str) -> bool:
    """Whether ``path`` is a photo (see :func:`~fer.video.decode.is_still`); False when that cannot
    be told (a corrupt animated image): decoding it then says what is wrong."""
    try:
        return is_still(path)
    except Exception:  # noqa: BLE001 - OpenCV's errors on a corrupt file; decoding reports them
        return False


def _segment_rows(
    seg: dict, rows: dict[str, list], error: str, missing: int, *, last: bool = True, sent: int = 0,
    frames: int = 0, chunk: int = 0,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Chunk number ``chunk`` of a segment's output columns: one row per face found (``rows``).
    The ``last`` chunk, after ``sent`` rows in earlier ones, carries the segment's row count,
    the ``frames`` it has rows for and the frames ``missing``; it is one error row when
    decoding failed or gave no frame (a segment past a truncated end reports so too)."""
    n = len(rows.get("frame", ()))
    if last and (error or n == 0):
        n = 1
        rows = {
            "frame": [-1], "time_s": [np.nan], "has_face": [False], "box": [(np.nan,) * 4], "score": [np.nan],
            "landmarks": [_NO_MARKS], "crop": [_NO_CROP], "signature": [_NO_SIGNATURE],
            "descriptor": [_NO_DESCRIPTOR], "quality": [np.nan],
        }  # fmt: skip
    out = {k: np.full(n, seg[k]) for k in VIDEO_FIELDS}
    out.update(
        segment=np.full(n, int(seg["segment"])),
        chunk=np.full(n, chunk),
        row=np.arange(sent, sent + n),
        seg_rows=np.full(n, sent + n if last else -1),
        seg_frames=np.full(n, frames if last else -1),
        seg_missing=np.full(n, missing),
        frame=np.asarray(rows["frame"], np.int64),
        time_s=np.asarray(rows["time_s"], np.float64),
        has_face=np.asarray(rows["has_face"], bool),
        box=np.asarray(rows["box"], np.float32).reshape(n, 4),
        score=np.asarray(rows["score"], np.float32),
        landmarks=np.asarray(rows["landmarks"], np.float32).reshape(n, len(LANDMARK_COLUMNS)),
        crop=np.stack(rows["crop"]),
        signature=np.stack(rows["signature"]),
        descriptor=np.asarray(rows["descriptor"], np.float32).reshape(n, DIMS),
        quality=np.asarray(rows["quality"], np.float32),
        error=np.full(n, error, dtype=object),
    )
    return out


#: Fault injection for the tests, as ``NAME:MARKER``: a decoder's process is SIGKILLed (as the
#: kernel's OOM killer ends it) a second after sending the first chunk of a segment of a video
#: whose path holds NAME (time for the chunk to reach the driver); once (MARKER, a file, is
#: written first) or, with MARKER ``always``, on every try.
CHAOS_ENV = "FER_CHAOS_KILL_DECODER"


def _chaos(path: str) -> None:
    spec = os.environ.get(CHAOS_ENV)
    if not spec:
        return
    name, marker = spec.split(":", 1)
    if name not in path:
        return
    if marker != "always":
        if os.path.exists(marker):
            return
        with open(marker, "w") as f:
            f.write(f"killed a decoder of {path}\n")
    time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


class Classify:
    """map_batches actor: emotion probabilities for the crops of a batch of rows.

    The model loads once per actor, on ``runtime`` (:data:`fer.bundle.RUNTIMES`: ``"auto"``
    runs LiteRT on the CPU when the bundle has it, ``"keras"`` is what a GPU needs).
    ``threads`` sets the runtime's CPU threads (0: its default, every core).
    """

    def __init__(self, *, model: str | None, tta: str, threads: int, runtime: str = "auto"):
        from fer import bundle

        if threads and "keras" in bundle.resolved_runtime(model, runtime):
            # TensorFlow's pools are process-wide and fixed once it starts: the actor owns its
            # process, so it sets them here, before the model loads.
            from fer._tf import tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
        self.model = bundle.load(model, runtime=runtime, threads=threads)
        self.tta = tta

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return with_probs(batch, lambda crops: self.model.predict(crops, tta=self.tta))


def with_probs(batch: dict[str, np.ndarray], predict) -> dict[str, np.ndarray]:
    """``batch`` with its crops replaced by emotion probabilities (NaN for rows without a face);
    ``predict`` maps crops to probabilities and is only called when there are faces. Both
    engines classify through it, so an exception (a bug, or a GPU out of memory) fails the
    videos with faces in the batch with :data:`INTERNAL_ERROR` the same way (the run then exits 70)."""
    crops = batch.pop("crop")
    has_face = batch["has_face"]
    probs = np.full((len(crops), len(EMOTIONS)), np.nan, np.float32)
    if has_face.any():
        try:
            probs[has_face] = predict(crops[has_face])
        except Exception as exc:  # noqa: BLE001 - see the docstring
            traceback.print_exc()
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{INTERNAL_ERROR} classifying: {type(exc).__name__}: {exc} ({where.filename}:{where.lineno})"
            # The videos whose faces were in it fail; a video of the batch without one is unharmed.
            hit = np.isin(batch["video_id"], batch["video_id"][has_face])
            before = batch.get("error", np.full(len(crops), "", dtype=object))
            batch["error"] = np.where(hit, reason, before).astype(object)
    batch["probs"] = probs
    return batch
