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

from fer import bundle, console
from fer._ray import ENGINES
from fer.errors import EnvironmentFault, FerError
from fer.schema import AGGREGATES_DIR, LOGS_DIR, PERSONS_DIR, TIMELINES_DIR
from fer.storage import Location
from fer.validation import AT_LEAST_ONE, NON_NEGATIVE_INT, NONE, POSITIVE, PROBABILITY, Options, option, validate
from fer.video import manifest
from fer.video.align import MARGIN
from fer.video.engines import classify_runtime, label_here, label_on_ray, runs_here
from fer.video.faces import DEFAULT_DETECTOR, DETECTORS, MIN_FACE
from fer.video.inputs import VideoInput, resolve_inputs
from fer.video.output import VideoWriter
from fer.video.stages import INTERNAL_ERROR

#: ``--detect-every``'s default where the detector takes windows: at 1080p with 4 faces a frame it
#: labels faster than 1, every face still found (docs/benchmarks.md#archive-speed).
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
    persons: bool = option(True, "Describe faces about once a second and join a video's face tracks into "
                                 "persons (the person column); --no-persons keeps no face descriptor.")  # fmt: skip
    batch_size: int = option(256, "Faces per classifier batch.")
    gpus: int = option(0, "Classifier actors with one GPU each (0: on the CPUs).")
    decoders: int | None = option(None, "Decode+detect actors (default: one per CPU).")
    segment_seconds: float = option(60.0, "Split videos into segments this long.")
    tta: str = option("none", f"Test-time augmentation: {bundle.TTA.help()}.")
    runtime: str = option("auto", f"Classifier runtime: auto (litert when the bundle has it, keras on GPUs); "
                                  f"{bundle.RUNTIMES.help()}.")  # fmt: skip
    overwrite: bool = option(False, "Redo videos the manifest says are done.")
    engine: str = option("auto", "auto: short jobs and photos on this machine (no GPUs; a few short "
                                 "videos, or only images) run in this process, the rest on Ray; ray | process "
                                 "force one.")  # fmt: skip
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
        # Persons only when off: outputs labelled before persons existed stay done (--overwrite adds them).
        return {"fps": self.fps, "detector": self.detector, "min_face": self.min_face, "tta": self.tta,
                "margin": self.margin, "align": self.align, "detect_every": self.detect_every,
                **({} if self.persons else {"persons": False})}  # fmt: skip


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


#: The shortest wall time a rate is given for: over less, a rate is mostly timer noise.
MIN_RATE_S = 1.0


@dataclass
class LabelSummary:
    """The outcome of a run, per video in ``entries``."""

    out: Location
    entries: list[manifest.Entry] = field(default_factory=list)
    seconds: float = 0.0
    #: When the progress first saw sampled frames and when it last saw more, each as (seconds from
    #: the start, frames sampled by then); None: nothing was sampled.
    sampled: tuple[tuple[float, int], tuple[float, int]] | None = None
    #: video id -> (first rows arrived, video finished), seconds from the start of the run.
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Times a video was probed (demuxed to plan its segments): once per video labelled (a probe
    #: whose process died and was tried again counts twice).
    probes: int = 0
    #: Rows the driver dropped: had already (a replayed task's), or of a video finished or not planned.
    rows_dropped: int = 0

    @property
    def startup_s(self) -> float | None:
        """Seconds from the start to the first sampled frames (None: none were)."""
        return None if self.sampled is None else self.sampled[0][0]

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries)

    @property
    def frames(self) -> int:
        return sum(e.frames for e in self.entries if e.status in manifest.LABELLED)

    @property
    def faces(self) -> int:
        return sum(e.faces for e in self.entries if e.status in manifest.LABELLED)

    def rates(self) -> tuple[float | None, float | None]:
        """Sampled frames per second over the whole run, and after start-up (from the first
        frames seen to the last); None where that time is under :data:`MIN_RATE_S` (a 72-frame
        clip once gave "16909 frames/s")."""
        whole = self.frames / self.seconds if self.seconds >= MIN_RATE_S else None
        after = None
        if self.sampled is not None:
            (t0, n0), (t1, n1) = self.sampled
            after = (n1 - n0) / (t1 - t0) if t1 - t0 >= MIN_RATE_S else None
        return whole, after

    def totals(self) -> dict:
        """Videos per status, frames and faces labelled, seconds of the run, the rates."""
        whole, after = self.rates()
        return {
            "videos": len(self.entries),
            **{status: self.count(status) for status in manifest.STATUSES},
            "frames": self.frames, "faces": self.faces, "seconds": round(self.seconds, 3),
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3), "probes": self.probes,
            "rows_dropped": self.rows_dropped,
            "frames_per_s": None if whole is None else round(whole, 1),
            "frames_per_s_after_startup": None if after is None else round(after, 1),
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


class InternalError(RuntimeError):
    """A bug of fer's failed videos (their reasons start with ``internal error``, the
    tracebacks are in the run's log); ``summary`` holds the run's outcome: every other video
    was saved. ``fer label`` prints it and exits 70."""

    def __init__(self, message: str, summary: LabelSummary):
        super().__init__(message)
        self.summary = summary


def run(
    config: LabelConfig, *, progress: TextIO | None = sys.stderr, run_name: str | None = None,
    videos: list[VideoInput] | None = None,
) -> LabelSummary:  # fmt: skip
    """Label every input video; return the per-video outcome (also in the manifest).

    ``progress`` is where the live progress goes (None: nowhere). The run's record, with
    settings, versions, per-video outcomes and timings, is written to
    ``OUT/logs/run-<run_name>.json`` (default name: the start time). Every finished video
    is saved as it finishes; a run stopped by Ctrl-C (:class:`Interrupted`) or by an output
    that cannot be written (:class:`OutputFault`) says what was saved and what is left, and
    the same call continues it. ``videos`` are ``config.inputs`` already resolved
    (:func:`fer.video.inputs.resolve_inputs`: the CLI checks them before it writes anything).

    Example: ``run(LabelConfig(inputs=("clips/",), out="out"))``
    """
    t0 = time.time()
    videos = resolve_inputs(config.inputs) if videos is None else videos
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
            (label_here if runs_here(config, plan.todo) else label_on_ray)(job)
    except KeyboardInterrupt:
        _stop(job, "interrupted: run again to continue")
        raise Interrupted(summary) from None
    except EnvironmentFault as exc:
        _stop(job, f"not labelled: {exc}")
        raise OutputFault(str(exc), summary) from None
    summary.seconds = time.time() - t0
    _write_run_log(job)
    bugs = [e for e in summary.entries if e.status == manifest.FAILED
            and any(part.startswith(INTERNAL_ERROR) for part in e.reason.split("; "))]  # fmt: skip
    if bugs:  # every other video is saved; a bug is still a crash (exit 70), not a bad input
        raise InternalError(f"a bug in fer failed {len(bugs)} video(s), e.g. {bugs[0].path}: {bugs[0].reason}", summary)
    return summary


def _prepare(where: str) -> Location:
    """The output location with its folders, checked writable before any work."""
    out = Location.parse(where)
    for folder in (TIMELINES_DIR, AGGREGATES_DIR, PERSONS_DIR, manifest.MANIFEST_DIR, LOGS_DIR):
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

    def writer(self) -> VideoWriter:
        """The writer that saves each video of the plan as its last rows arrive."""
        inputs = {v.video_id: (v, key) for v, key in self.plan.todo}
        return VideoWriter(self.config, self.meta, self.runtime, inputs, self.plan.superseded, self.summary, self.t0)


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
    plan, first_path, kept = _Plan(), {}, set()
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
            kept.add(prev.video_id)
            continue
        plan.todo.append((v, key))
        plan.superseded[v.video_id] = [e.video_id for e in by_path[os.path.abspath(v.path)]]
    # A file moved away from a path that now holds another keeps its labels (skipped or labelled again).
    kept |= {v.video_id for v, _ in plan.todo}
    plan.superseded = {vid: [old for old in olds if old not in kept] for vid, olds in plan.superseded.items()}
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
