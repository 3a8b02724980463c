"""``fer label``: video files to per-frame, per-face emotion timelines, on Ray Data.

The driver resolves inputs, skips videos the manifest says are done with the same input,
model and settings, streams the rest through the stages in :mod:`fer.video.stages`, and
finishes each video as soon as all its rows have arrived: it assigns face ids, writes the
Parquet file atomically and records the video in the manifest. The output may be a local
or shared path or an object-store URI (:mod:`fer.storage`); only the driver writes it.
Memory on the driver is bounded by the rows of the videos still in flight, not by the
archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa

from fer import aggregates, bundle, console
from fer.errors import EnvironmentFault, FerError
from fer.labels import EMOTIONS, FACE_SIZE
from fer.schema import (
    AGGREGATES_DIR,
    LANDMARK_COLUMNS,
    LOGS_DIR,
    NO_FACE,
    TIMELINE_SCHEMA,
    TIMELINES_DIR,
    dominant,
    with_metadata,
)
from fer.storage import Location
from fer.validation import AT_LEAST_ONE, NON_NEGATIVE_INT, NONE, POSITIVE, PROBABILITY, Options, option, validate
from fer.video import manifest
from fer.video.align import MARGIN
from fer.video.faces import DEFAULT_DETECTOR, DETECTORS, MIN_FACE
from fer.video.inputs import VideoInput, resolve_inputs
from fer.video.progress import Display, start_counter
from fer.video.shots import shot_index
from fer.video.stages import CHUNK_ROWS
from fer.video.track import assign_ids

#: ``--detect-every``'s default where the detector takes windows: 1080p with 4 faces 35.9 frames/s
#: against 29.2 at 1 (2 AVX2 cores), every face found (benchmarks/archive_speed.py).
DETECT_EVERY = 5


@dataclass(frozen=True)
class LabelConfig:
    """Everything one labelling run needs; see ``fer label --help``.

    ``decoders`` (decode + detect actors, one CPU each) defaults to the cluster's CPUs.
    ``gpus`` is the number of classifier actors that each get a GPU; with 0 the classifier
    actors (one per 8 CPUs, a thread per CPU of those) share the CPUs with the decoders,
    ahead of them (:data:`DECODER_NICE`).
    """

    inputs: tuple[str, ...]
    out: str
    model: str | None = option(None, "Model bundle (default: the shipped model).")
    fps: float | None = option(None, "Frames per second to sample (default: every frame).")
    detector: str = option(DEFAULT_DETECTOR, f"Face detector: {DETECTORS.help()}.")
    min_face: int = option(MIN_FACE, "Ignore faces smaller than this (pixels); YuNet detects at the scale it allows.")
    detect_every: int | None = option(None, "Detect faces in the whole frame every N sampled frames (and at cuts, "
                                            "and every 0.5 s); between, in a window around each face (default: "
                                            f"{DETECT_EVERY} with yunet, 1 with whole-frame detectors).")  # fmt: skip
    align: bool = option(True, "Level the eyes and frame each face as FER-2013 does before classifying.")
    batch_size: int = option(256, "Faces per classifier batch.")
    gpus: int = option(0, "Classifier actors with one GPU each (0: on the CPUs).")
    decoders: int | None = option(None, "Decode+detect actors (default: one per CPU).")
    segment_seconds: float = option(60.0, "Split videos into segments this long.")
    tta: str = option("none", f"Test-time augmentation: {bundle.TTA.help()}.")
    runtime: str = option("auto", f"Classifier runtime: auto (litert when the bundle has it, keras on GPUs); "
                                  f"{bundle.RUNTIMES.help()}.")  # fmt: skip
    overwrite: bool = option(False, "Redo videos the manifest says are done.")
    engine: str = option("auto", "auto: short jobs on this machine (no GPUs, a few short videos) run in this "
                                 "process, the rest on Ray; ray | process force one.")  # fmt: skip
    address: str | None = option(None, "Ray cluster address (default: RAY_ADDRESS, else local).")
    margin: float = MARGIN
    #: The command line that asked for the run, recorded in its run log.
    command: str = ""

    def __post_init__(self) -> None:
        DETECTORS.get(self.detector)
        bundle.TTA.get(self.tta)
        validate(self, LABEL_CONSTRAINTS)
        windows = DETECTORS.get(self.detector).info.get("windows", False)
        if self.detect_every is None:  # frozen: the default is resolved once, here
            object.__setattr__(self, "detect_every", DETECT_EVERY if windows else 1)
        elif self.detect_every > 1 and not windows:
            raise FerError(
                f"--detect-every {self.detect_every}: the {self.detector} detector detects whole frames only; "
                "use --detector yunet, or --detect-every 1"
            )

    def settings_key(self) -> dict:
        """The settings that change a video's timeline (the rest only change speed)."""
        return {"fps": self.fps, "detector": self.detector, "min_face": self.min_face, "tta": self.tta,
                "margin": self.margin, "align": self.align, "detect_every": self.detect_every}  # fmt: skip


ENGINES = ("auto", "ray", "process")
#: What each option of :class:`LabelConfig` accepts (checked once, when it is built).
LABEL_CONSTRAINTS = {
    "fps": (NONE, POSITIVE),
    "min_face": (AT_LEAST_ONE,),
    "detect_every": (NONE, AT_LEAST_ONE),
    "batch_size": (AT_LEAST_ONE,),
    "gpus": (NON_NEGATIVE_INT,),
    "segment_seconds": (POSITIVE,),
    "decoders": (NONE, AT_LEAST_ONE),
    "margin": (PROBABILITY,),
    "engine": (Options(ENGINES),),
    "runtime": (Options(bundle.RUNTIME_CHOICES),),
}


@dataclass
class LabelSummary:
    """The outcome of a run, per video in ``entries``."""

    out: Location
    entries: list[manifest.Entry] = field(default_factory=list)
    seconds: float = 0.0
    #: Seconds from the start to the first decoded frame (None: nothing was labelled).
    startup_s: float | None = None
    #: video id -> (first rows arrived, video finished), seconds from the start of the run.
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries)

    @property
    def frames(self) -> int:
        return sum(e.frames for e in self.entries if e.status in manifest.LABELLED)

    @property
    def faces(self) -> int:
        return sum(e.faces for e in self.entries if e.status in manifest.LABELLED)

    def totals(self) -> dict:
        """Videos per status, frames and faces labelled, seconds of the run."""
        return {
            "videos": len(self.entries),
            **{status: self.count(status) for status in manifest.STATUSES},
            "frames": self.frames, "faces": self.faces, "seconds": round(self.seconds, 3),
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
        }  # fmt: skip

    def to_dict(self) -> dict:
        """The outcome as plain data (``fer label --json``)."""
        return {"out": str(self.out), "videos": [asdict(e) for e in self.entries], "totals": self.totals()}


def _input_key(video: VideoInput, model_id: str, config: LabelConfig, runtime: str) -> str:
    """What a video's timeline depends on: its content, the model, the settings and the
    runtime that classifies (the float and int8 networks differ for ~0.3% of faces)."""
    # LiteRT, the CPU default, leaves the key as it was before runtimes were keyed on: outputs
    # written then (on CPUs) are not all labelled again.
    blob = json.dumps([video.content, model_id, config.settings_key(), *([runtime] if runtime != "litert" else [])])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def timeline_path(out: Location, video_id: str) -> Location:
    return out / TIMELINES_DIR / f"{video_id}.parquet"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`; ``summary`` holds what was saved before it and what is left."""

    def __init__(self, summary: LabelSummary):
        super().__init__()
        self.summary = summary


class OutputFault(EnvironmentFault):
    """:func:`run` stopped on an environment fault (an output that cannot be written, a full
    disk, too few GPUs); the message says which, ``summary`` holds what was saved before it."""

    def __init__(self, message: str, summary: LabelSummary):
        super().__init__(message)
        self.summary = summary


def run(config: LabelConfig, *, progress: TextIO | None = sys.stderr, run_name: str | None = None) -> LabelSummary:
    """Label every input video; return the per-video outcome (also in the manifest).

    ``progress`` is where the live progress goes (None: nowhere). The run's record, with
    settings, versions, per-video outcomes and timings, is written to
    ``OUT/logs/run-<run_name>.json`` (default name: the start time). Every finished video
    is saved as it finishes; a run stopped by Ctrl-C (:class:`Interrupted`) or by an output
    that cannot be written (:class:`OutputFault`) says what was saved and what is left, and
    the same call continues it.

    Example: ``run(LabelConfig(inputs=("clips/",), out="out"))``
    """
    t0 = time.time()
    videos = resolve_inputs(config.inputs)
    model_path = bundle.resolve(config.model)
    meta = bundle.read_meta(model_path)
    bundle.check_tta(meta, config.tta)
    out = _prepare(config.out)
    summary = LabelSummary(out=out)
    runtime = bundle.resolved_runtime(model_path, classify_runtime(config))
    plan = _plan(videos, out, meta["id"], runtime, config, summary)
    log = out / LOGS_DIR / f"run-{run_name or console.stamp()}.json"
    job = _Run(config, plan, model_path, meta, runtime, summary, progress, t0, log)
    try:
        if plan.todo:
            (_label_here if _runs_here(config, plan.todo) else _label)(job)
    except KeyboardInterrupt:
        _stop(job, "interrupted: run again to continue")
        raise Interrupted(summary) from None
    except EnvironmentFault as exc:
        _stop(job, f"not labelled: {exc}")
        raise OutputFault(str(exc), summary) from None
    summary.seconds = time.time() - t0
    _write_run_log(job)
    return summary


def _prepare(where: str) -> Location:
    """The output location with its folders, checked writable before any work."""
    out = Location.parse(where)
    for folder in (TIMELINES_DIR, AGGREGATES_DIR, manifest.MANIFEST_DIR, LOGS_DIR):
        (out / folder).makedirs()
    for folder in (TIMELINES_DIR, manifest.MANIFEST_DIR):
        (out / folder).check_writable()
    return out


@dataclass
class _Plan:
    """What a run has to do: ``todo`` (video, key) pairs, and for each the ids of the entries
    it supersedes (another content labelled from the same path: the file was replaced)."""

    todo: list[tuple[VideoInput, str]] = field(default_factory=list)
    superseded: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Run:
    """One labelling run as its engines see it: what to do, with which model, where the
    outcome goes (``summary``, the live ``progress``, the run ``log``) and when it started."""

    config: LabelConfig
    plan: _Plan
    model_path: Path
    meta: dict
    runtime: str
    summary: LabelSummary
    progress: TextIO | None
    t0: float
    log: Location

    def writer(self) -> _VideoWriter:
        """The writer that saves each video of the plan as its last rows arrive."""
        inputs = {v.video_id: (v, key) for v, key in self.plan.todo}
        return _VideoWriter(self.config, self.meta, self.runtime, inputs, self.plan.superseded, self.summary, self.t0)


def _plan(
    videos: list[VideoInput], out: Location, model_id: str, runtime: str, config: LabelConfig, summary: LabelSummary
) -> _Plan:
    """The videos to label. A video is found done by its content, wherever it now lies (a
    moved or renamed file is recorded under its new path, not labelled again); the skipped
    ones go into ``summary``."""
    entries = manifest.load(out)
    written = {f.stem for f in (out / TIMELINES_DIR).files(".parquet")}  # one listing, not a request per video
    by_content = {e.content: e for e in entries.values() if e.content and e.status in manifest.LABELLED}
    by_path: dict[str, list[manifest.Entry]] = defaultdict(list)
    for e in entries.values():
        by_path[os.path.abspath(e.path)].append(e)
    plan, first_path = _Plan(), {}
    for v in videos:
        if v.content in first_path:  # one file under two paths in this run
            summary.entries.append(manifest.Entry(
                v.video_id, v.path, manifest.SKIPPED, f"the same file as {first_path[v.content]}", content=v.content
            ))  # fmt: skip
            continue
        first_path[v.content] = v.path
        key = _input_key(v, model_id, config, runtime)
        prev = by_content.get(v.content)
        if not config.overwrite and prev is not None and prev.key == key and prev.video_id in written:
            if prev.path != v.path:  # moved or renamed: the path is recorded, not keyed on
                prev = replace(prev, path=v.path)
                manifest.record(out, prev)
            summary.entries.append(replace(prev, status=manifest.SKIPPED, reason=f"already {prev.status}"))
            continue
        plan.todo.append((v, key))
        plan.superseded[v.video_id] = [
            e.video_id for e in by_path[os.path.abspath(v.path)] if e.video_id != v.video_id
        ]  # fmt: skip
    return plan


def _stop(job: _Run, reason: str) -> None:
    """Close a stopped run's summary: the videos not finished are listed with ``reason``, and
    the run log is written if it still can be."""
    finished = {e.video_id for e in job.summary.entries}
    for v, key in job.plan.todo:
        if v.video_id not in finished:
            job.summary.entries.append(manifest.Entry(
                v.video_id, v.path, manifest.INTERRUPTED, reason, model_id=job.meta["id"], key=key, content=v.content
            ))  # fmt: skip
    job.summary.seconds = time.time() - job.t0
    with contextlib.suppress(EnvironmentFault):  # the fault that stopped the run may forbid this too
        _write_run_log(job)


def _write_run_log(job: _Run) -> None:
    """The run's own record (``fer label``'s run log): what was asked, with what, what
    happened to each video and when (seconds from the start), and the totals."""
    videos = []
    for e in job.summary.entries:
        first, last = job.summary.timings.get(e.video_id, (None, None))
        videos.append({**asdict(e), "first_rows_s": first, "finished_s": last})
    record = {
        "command": job.config.command,
        "started": datetime.fromtimestamp(job.t0).isoformat(timespec="seconds"),
        "versions": console.versions(),
        "settings": asdict(job.config),
        "model": {"id": job.meta["id"], "name": job.meta.get("name")},
        "videos": videos,
        "totals": job.summary.totals(),
    }
    job.log.write_bytes((json.dumps(record, indent=1, default=str) + "\n").encode())


def _label(job: _Run) -> None:
    """Stream the plan's videos through the stages on Ray into the run's summary (entries,
    timings, start-up time)."""
    import ray

    from fer._ray import connect, require_gpus

    config = job.config
    started = connect(config.address)
    require_gpus(config.gpus, f"--gpus {config.gpus}")
    counter = start_counter()
    ds = _dataset(job.plan.todo, config, job.model_path, counter, _Pools.of(config, ray.cluster_resources()))
    writer = job.writer()
    with Display(counter, lambda: (writer.videos_finished, writer.failed, len(job.plan.todo)), job.progress) as display:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            writer.add(batch)
    writer.finish_incomplete()
    ray.kill(counter)
    if started:
        # Lets the actors' last log lines arrive now, not after the caller's summary.
        ray.shutdown()
    job.summary.startup_s = display.first[0] - job.t0 if display.first else None


#: How much lower the decoders' CPU priority is than the classifiers' (``nice``): where faces
#: cost more to classify than frames to decode (the FER+ ensemble on AVX2, 4 faces a frame), the
#: classifier gets the cores first instead of falling behind and finishing alone on one of them;
#: where it is idle, the decoders have every core as before.
DECODER_NICE = 5

#: Decoders one probing task keeps fed: probing reads packets only (>100,000 frames/s here, against
#: ~200 frames/s a decoder labels); opening many small files is what it then waits on.
DECODERS_PER_PROBE = 16


@dataclass(frozen=True)
class _Pools:
    """The actors of a run on Ray: decoders (a CPU each), classifiers and their CPU threads."""

    decoders: int
    classifiers: int
    threads: int

    @classmethod
    def of(cls, config: LabelConfig, resources: dict) -> _Pools:
        cpus = max(1, int(resources.get("CPU", 1)))
        classifiers = config.gpus or max(1, cpus // 8)
        # On CPUs a classifier may use its share of the cores: they are the decoders' while
        # decoding goes, and its own once the decoders finish and faces are still queued.
        return cls(config.decoders or cpus, classifiers, 1 if config.gpus else max(1, cpus // classifiers))


def _dataset(todo, config: LabelConfig, model_path: Path, counter, pools: _Pools):
    """The Ray Data pipeline: probe (tasks) -> decode + detect + crop (CPU actors) -> classify."""
    import ray

    context = ray.data.DataContext.get_current().copy()
    # A decoder's chunk of rows (CHUNK_ROWS crops and their fields) fills a block and goes on to
    # the classifier at once; Ray's default (128 MB) would hold a whole segment's rows back.
    context.target_max_block_size = CHUNK_ROWS * FACE_SIZE * FACE_SIZE
    with ray.data.DataContext.current(context):
        return _stages(todo, config, model_path, counter, pools)


def _stages(todo, config: LabelConfig, model_path: Path, counter, pools: _Pools):
    """:func:`_dataset`'s stages, built under its data context."""
    import ray

    from fer.video.stages import Classify, DecodeDetect, probe_segments

    # Short jobs are split finer, so that one short video still keeps every decoder busy: each
    # video is probed in `spread` parts, a block each (Ray sends a block to one decoder).
    decoders = pools.decoders
    spread = max(1, decoders // len(todo))
    items = [{"path": v.path, "video_id": v.video_id, "part": k} for v, _ in todo for k in range(spread)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # Probing only demuxes; it must not wait for a CPU that the actor pools hold.
    ds = ds.flat_map(
        probe_segments,
        fn_kwargs={"segment_seconds": config.segment_seconds, "spread": spread, "counter": counter},
        num_cpus=0,
        # Without a CPU to bound them, every probe would start a worker process of its own
        # (~200 MB each).
        compute=ray.data.TaskPoolStrategy(size=max(1, decoders // DECODERS_PER_PROBE)),
    )
    ds = ds.map_batches(
        DecodeDetect,
        fn_constructor_kwargs={**_decode_options(config), "counter": counter, "nice": DECODER_NICE},
        batch_size=1,
        # A decoder per part from the start (fewer for fewer parts); one part at a time, so none
        # waits queued behind another while a decoder idles.
        compute=ray.data.ActorPoolStrategy(
            min_size=1, initial_size=min(decoders, len(items)), max_size=decoders, max_tasks_in_flight_per_actor=1
        ),
        num_cpus=1,
    )
    return ds.map_batches(
        Classify,
        fn_constructor_kwargs=_classify_options(config, model_path, threads=pools.threads),
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=pools.classifiers),
        num_gpus=1 if config.gpus else 0,
        # No CPU reservation: the classifier shares the decoders' cores, ahead of them (CPU
        # mode), or only feeds its GPU; a core of its own would idle where faces are few.
        num_cpus=0,
    )


def classify_runtime(config: LabelConfig) -> str:
    """The runtime asked of the classifier: ``"auto"`` means tf-keras on GPUs (LiteRT runs on
    CPUs only); :func:`fer.bundle.resolved_runtime` says what it resolves to for a bundle."""
    return "keras" if config.gpus and config.runtime == "auto" else config.runtime


def _classify_options(config: LabelConfig, model_path: Path, threads: int) -> dict:
    """:class:`~fer.video.stages.Classify`'s arguments."""
    return {"model": str(model_path), "tta": config.tta, "threads": threads, "runtime": classify_runtime(config)}


def _decode_options(config: LabelConfig) -> dict:
    return {"detector": config.detector, "min_face": config.min_face, "sample_fps": config.fps,
            "margin": config.margin, "align": config.align, "detect_every": config.detect_every}  # fmt: skip


#: The most frames (of all a job's videos, as their containers state) that ``engine="auto"``
#: labels in this process: about the break-even with starting Ray (~15 s) and decoding on
#: every core, measured on 2 cores; a short clip then gives its first result in seconds.
PROCESS_MAX_FRAMES = 1000
#: ... and the most videos (each is opened to read its frame count).
PROCESS_MAX_VIDEOS = 8


def _runs_here(config: LabelConfig, todo) -> bool:
    """Whether this job runs in this process (see :attr:`LabelConfig.engine`)."""
    if config.engine != "auto":
        return config.engine == "process"
    if config.address or os.environ.get("RAY_ADDRESS") or config.gpus or len(todo) > PROCESS_MAX_VIDEOS:
        return False
    return sum(_frame_count(v.path) for v, _ in todo) <= PROCESS_MAX_FRAMES


def _frame_count(path: str) -> int:
    """The frame count a video's container states (opening it only; 1 for an image, 0 when unreadable)."""
    import cv2

    from fer.video.inputs import is_image

    if is_image(path):
        return 1
    cap = cv2.VideoCapture(path)
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) if cap.isOpened() else 0
    finally:
        cap.release()


def _label_here(job: _Run) -> None:
    """:func:`_label` in this process, for short jobs: the same stages called directly (no Ray
    to start). Every video is probed first, so broken files are reported at once; the model
    then loads in a thread while the first video is decoded (and not at all without faces)."""
    from concurrent.futures import ThreadPoolExecutor

    from fer.video.progress import Counter
    from fer.video.stages import Classify, DecodeDetect, as_batch, probe_segments, with_probs

    config, counter, writer = job.config, Counter(), job.writer()
    videos = lambda: (writer.videos_finished, writer.failed, len(job.plan.todo))  # noqa: E731
    with Display(counter, videos, job.progress) as display, ThreadPoolExecutor(1) as pool:
        segments = [
            s
            for v, _ in job.plan.todo
            for s in probe_segments({"path": v.path, "video_id": v.video_id}, segment_seconds=config.segment_seconds,
                                    counter=counter)
        ]  # fmt: skip
        if any(not s["error"] for s in segments):
            loading = pool.submit(Classify, **_classify_options(config, job.model_path, threads=0))
            decoder = DecodeDetect(**_decode_options(config), counter=counter)
        for segment in segments:
            batch = as_batch(segment)
            chunks = decoder(batch) if not segment["error"] else [DecodeDetect.failed(batch)]
            for rows in chunks:
                writer.add(with_probs(rows, lambda crops: loading.result().model.predict(crops, tta=config.tta)))
    writer.finish_incomplete()
    job.summary.startup_s = display.first[0] - job.t0 if display.first else None


class _VideoWriter:
    """Collects rows per video and finishes each video once all its segments arrived."""

    def __init__(
        self,
        config: LabelConfig,
        meta: dict,
        runtime: str,
        inputs: dict[str, tuple[VideoInput, str]],
        superseded: dict[str, list[str]],
        summary: LabelSummary,
        t0: float,
    ):
        self.config = config
        self.out = summary.out
        self.meta = meta
        self.runtime = runtime
        self.inputs = inputs  # video id -> (input, key)
        self.superseded = superseded
        self.summary = summary
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self.seg_rows: dict[tuple[str, int], int] = defaultdict(int)  # rows arrived
        self.seg_total: dict[tuple[str, int], int] = {}  # rows the segment's last chunk says it has
        self.segments_done: dict[str, int] = defaultdict(int)
        self.videos_finished = 0
        self.failed = 0
        self.t0 = t0
        self.first_rows: dict[str, float] = {}

    def add(self, batch: dict[str, np.ndarray]) -> None:
        ids = batch["video_id"]
        for vid in np.unique(ids):
            sel = ids == vid
            part = {k: v[sel] for k, v in batch.items()}
            self.rows[vid].append(part)
            self.first_rows.setdefault(vid, time.time() - self.t0)
            for seg in np.unique(part["segment"]):
                in_seg = part["segment"] == seg
                key = (vid, int(seg))
                self.seg_rows[key] += int(in_seg.sum())
                total = int(part["seg_rows"][in_seg].max())  # -1 but on the last chunk's rows
                if total >= 0:
                    self.seg_total[key] = total
                if self.seg_rows[key] == self.seg_total.get(key):
                    self.segments_done[vid] += 1
                    del self.seg_rows[key], self.seg_total[key]
            if self.segments_done[vid] == int(part["n_segments"][0]):
                del self.segments_done[vid]
                self._finish(vid)

    def _finish(self, vid: str) -> None:
        parts = self.rows.pop(vid)
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        errors = sorted({e for e in data["error"] if e})
        video, key = self.inputs[vid]
        base = {"video_id": vid, "path": video.path, "model_id": self.meta["id"], "key": key, "content": video.content}
        if errors:
            entry = manifest.Entry(**base, status=manifest.FAILED, reason="; ".join(errors))
            manifest.record(self.out, entry)
            self._remove_outputs(vid)  # an earlier run's timeline of this video no longer counts
            self.failed += 1
        else:
            entry = self._save(data, base, *_completeness(data))
        for old in self.superseded.get(vid, []):  # the file at this path was replaced: its old labels go
            self._remove_outputs(old)
            manifest.remove(self.out, old)
        self.summary.entries.append(entry)
        self.videos_finished += 1
        self.summary.timings[vid] = (round(self.first_rows.pop(vid), 3), round(time.time() - self.t0, 3))

    def _remove_outputs(self, vid: str) -> None:
        timeline = timeline_path(self.out, vid)
        timeline.delete()
        aggregates.location(timeline).delete()

    def _save(self, data: dict, base: dict, status: str, reason: str) -> manifest.Entry:
        """Write a video's timeline, aggregates and manifest entry, in that order (the entry
        last: it is what says the video is done). When a write fails, the files this attempt
        wrote are removed again, so no output is left without its entry."""
        table, frames, faces = _timeline(data)
        out = timeline_path(self.out, base["video_id"])
        written: list[Location] = []
        try:
            _write_timeline(table, out, self._file_meta(data))
            written.append(out)
            agg = aggregates.aggregate(table.to_pandas())
            aggregates.location(out).write_parquet(agg)
            written.append(aggregates.location(out))
            seconds = float(agg.column("seconds")[0].as_py() or 0.0) if agg.num_rows else 0.0
            entry = manifest.Entry(
                **base, status=status, reason=reason, frames=frames, faces=faces, seconds=round(seconds, 3),
                output=str(out),
            )  # fmt: skip
            manifest.record(self.out, entry)
        except EnvironmentFault:
            for f in written:
                f.delete()
            raise
        return entry

    def _file_meta(self, data: dict) -> dict:
        return {
            "model": {"name": self.meta.get("name"), "id": self.meta["id"], "runtime": self.runtime},
            "detector": self.config.detector,
            "sample_fps": self.config.fps,
            "settings": self.config.settings_key(),
            "video": {k: (v.item() if hasattr(v, "item") else v) for k, v in ((k, data[k][0]) for k in
                      ("video_path", "fps", "width", "height", "rotation", "frames"))},
        }  # fmt: skip

    def finish_incomplete(self) -> None:
        """Videos whose rows never all arrived (should not happen) are recorded as failed."""
        for vid in list(self.rows):
            video, key = self.inputs[vid]
            entry = manifest.Entry(
                video_id=vid, path=video.path, status=manifest.FAILED, reason="incomplete: not every segment finished",
                model_id=self.meta["id"], key=key, content=video.content,
            )  # fmt: skip
            manifest.record(self.out, entry)
            self.summary.entries.append(entry)
            del self.rows[vid]


#: A video counts as partial when more frames than this are missing: 16 frames (a decoder may
#: hold back up to 16 reordered H.264 frames at the end of a stream, and OpenCV does not always
#: flush them), or 2% of the container's count (containers without an exact count estimate it
#: from duration x rate), whichever is larger.
PARTIAL_MIN_FRAMES, PARTIAL_SHARE = 16, 0.02


def _completeness(data: dict) -> tuple[str, str]:
    """``(status, reason)`` of a video from its rows: partial when the frames that could be
    read and decoded fall short of the count its container states."""
    declared = int(data["declared"][0])
    last = data["seg_rows"] >= 0  # the rows of each segment's last chunk, which say what it missed
    firsts = np.unique(data["segment"][last], return_index=True)[1]
    missing = max(0, declared - int(data["frames"][0])) + int(data["seg_missing"][last][firsts].sum())
    if missing <= max(PARTIAL_MIN_FRAMES, PARTIAL_SHARE * declared):
        return manifest.DONE, ""
    return manifest.PARTIAL, (
        f"{declared - missing} of the {declared} frames the container states could be decoded (truncated or corrupt)"
    )


def _timeline(data: dict) -> tuple[pa.Table, int, int]:
    """Rows of one video (any order) to its timeline table; also frames and face rows."""
    keep = data["frame"] >= 0
    data = {k: v[keep] for k, v in data.items()}
    order = np.lexsort((data["box"][:, 0], data["frame"]))
    data = {k: v[order] for k, v in data.items()}
    box = data["box"]
    shot = _shots(data["frame"], data["time_s"], data["signature"])
    face_ids = assign_ids(data["time_s"], np.where(data["has_face"][:, None], box, np.nan), shots=shot)
    probs, has = data["probs"], data["has_face"]
    emotion, confidence = dominant(probs, has)
    n = len(face_ids)
    columns = {
        "video_id": data["video_id"].astype(str),
        "video_path": data["video_path"].astype(str),
        "frame": data["frame"],
        "time_s": data["time_s"],
        "shot": shot,
        "face_id": np.where(has, face_ids, NO_FACE).astype(np.int32),
        "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "score": data["score"],
        **{name: data["landmarks"][:, i] for i, name in enumerate(LANDMARK_COLUMNS)},
        "emotion": pa.array(list(emotion), pa.string()) if n else pa.array([], pa.string()),
        "confidence": confidence,
        **{name: probs[:, i] for i, name in enumerate(EMOTIONS)},
    }  # fmt: skip
    table = pa.table(columns, schema=TIMELINE_SCHEMA)
    return table, len(np.unique(data["frame"])), int(has.sum())


def _shots(frame: np.ndarray, time_s: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """The shot of each row (rows sorted by frame; a frame's rows share its signature)."""
    first = np.flatnonzero(np.r_[True, np.diff(frame) != 0])
    per_frame = shot_index(signature[first], time_s[first])
    return np.repeat(per_frame, np.diff(np.r_[first, len(frame)]))


def _write_timeline(table: pa.Table, where: Location, meta: dict) -> None:
    """Write one video's timeline with its metadata, atomically (:meth:`Location.write_parquet`):
    a crash never leaves a half-written file under the final name."""
    where.write_parquet(table.replace_schema_metadata(with_metadata(meta).metadata))
