"""The engines that run a labelling job's stages: Ray Data (any job, any cluster) or this
process (short jobs on this machine, no Ray to start). Both plan each video once
(:mod:`fer.video.plan`), run the same stages (:mod:`fer.video.stages`) and hand every row to
the same writer (:class:`fer.video.output.VideoWriter`), which finishes each video once.

On Ray, a process that dies (a decoder that crashes on a file, a node lost, the kernel's OOM
killer) is restarted and its task tried again, as Ray does; the run's counter counts the tries
of each probe and segment, and the :data:`~fer.video.progress.MAX_TRIES`-th gives up, so a
file that kills its decoder every time ends ``failed`` and the run goes on. A block that still
fails is dropped by Ray Data (``max_errored_blocks``): its video is failed with the segments
it lacks named. The writer drops what a replay sends twice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer._ray import cluster_address
from fer.labels import FACE_SIZE
from fer.video.progress import Display, start_counter
from fer.video.stages import CHUNK_ROWS

if TYPE_CHECKING:
    from fer.video.pipeline import LabelConfig, _Run

#: How much lower the decoders' CPU priority is than the classifiers' (``nice``): where faces
#: cost more to classify than frames to decode (the FER+ ensemble on AVX2, 4 faces a frame), the
#: classifier gets the cores first instead of falling behind and finishing alone on one of them;
#: where it is idle, the decoders have every core as before.
DECODER_NICE = 5

#: Probing tasks that run at once, per this many decoders: probing reads packets only (hundreds of
#: times faster than a decoder labels frames); opening many small files is what it then waits on.
DECODERS_PER_PROBE = 16

#: What a classifier on the CPUs reserves: a sliver of a CPU, so that Ray places it only on a node
#: that has CPUs (never on a cluster's head of 0 CPUs, as the shipped KubeRay and AWS heads are),
#: while it shares the cores with the decoders there, ahead of them (:data:`DECODER_NICE`); each
#: decoder reserves a CPU less the sliver, so that every core still gets a decoder.
CLASSIFIER_CPUS = 0.01


@dataclass(frozen=True)
class _Pools:
    """The actors of a run on Ray: decoders (a CPU each; ``decoders`` None: as many as the
    cluster has CPUs for, growing with it, ``initial_decoders`` at the start), classifiers and
    their CPU threads."""

    decoders: int | None
    initial_decoders: int
    classifiers: int
    threads: int

    @classmethod
    def of(cls, config: LabelConfig, resources: dict) -> _Pools:
        cpus = max(1, int(resources.get("CPU", 1)))
        classifiers = config.gpus or max(1, cpus // 8)
        # On CPUs a classifier may use its share of the cores: they are the decoders' while
        # decoding goes, and its own once the decoders finish and faces are still queued.
        threads = 1 if config.gpus else max(1, cpus // classifiers)
        return cls(config.decoders, config.decoders or cpus, classifiers, threads)


def label_on_ray(job: _Run) -> None:
    """Stream the job's videos through the stages on Ray into its summary (entries, timings,
    start-up time and the number of probes)."""
    import ray

    from fer._ray import connect, ctrl_c_deferred, require_gpus

    config = job.config
    started = connect(config.address)
    require_gpus(config.gpus, f"--gpus {config.gpus}")
    counter = start_counter()
    pools = _Pools.of(config, ray.cluster_resources())
    writer = job.writer()
    with Display(counter, lambda: (writer.videos_finished, writer.failed, len(job.plan.todo)), job.progress) as display:
        with ctrl_c_deferred():  # a Ctrl-C inside Ray Data's constructors leaves a half-built dataset
            ds = _dataset(job.plan.todo, config, job.model_path, counter, pools)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            writer.add(batch)
    writer.finish_incomplete()
    job.summary.probes = _final_counts(counter, display.counts).get("probes", 0)
    job.summary.rows_dropped = writer.collector.dropped
    ray.kill(counter)
    if started:
        # Lets the actors' last log lines arrive now, not after the caller's summary.
        ray.shutdown()
    job.summary.sampled = display.sampled(job.t0)


def _final_counts(counter, last: dict[str, int]) -> dict[str, int]:
    """The run's counts at its end, or the ``last`` the display polled when the counter is gone."""
    import ray

    try:
        return ray.get(counter.snapshot.remote(), timeout=10)
    except (ray.exceptions.RayError, TimeoutError):
        return last


def _dataset(todo, config: LabelConfig, model_path: Path, counter, pools: _Pools):
    """The Ray Data pipeline: plan -> decode + detect + crop (CPU actors) -> classify."""
    import ray

    context = ray.data.DataContext.get_current().copy()
    # A decoder's chunk of rows (CHUNK_ROWS crops and their fields) fills a block and goes on to
    # the classifier at once; Ray's default (128 MB) would hold a whole segment's rows back.
    context.target_max_block_size = CHUNK_ROWS * FACE_SIZE * FACE_SIZE
    # A block whose task failed on every try is dropped, not the run: its video is failed.
    context.max_errored_blocks = -1
    # A decoder takes one segment at a time, so its pool is as busy as it gets at a utilisation of
    # 1.0; Ray's default threshold (1.75) would never add the decoders new nodes have room for.
    context.autoscaling_config = dataclasses.replace(
        context.autoscaling_config, actor_pool_util_upscaling_threshold=1.0
    )
    with ray.data.DataContext.current(context):
        return _stages(todo, config, model_path, counter, pools)


def _segments(todo, config: LabelConfig, counter, decoders: int):
    """The dataset of the job's segments, each video probed once, and its number of blocks.

    An archive (at least as many videos as decoders) is probed as it streams, a video a task.
    A short job is probed first (a task a video, at once) and split finer, so that one short
    video still keeps every decoder busy: each of its segments is a block of its own (Ray sends
    a block to one decoder)."""
    import ray

    from fer.video.plan import probe_segments

    spread = max(1, decoders // len(todo))
    options = {"segment_seconds": config.segment_seconds, "spread": spread, "counter": counter,
               "sample_fps": config.fps}  # fmt: skip
    if spread == 1:
        items = [{"path": v.path, "video_id": v.video_id} for v, _ in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        return len(items), ds.flat_map(
            probe_segments,
            fn_kwargs=options,
            # Probing only demuxes; it must not wait for a CPU that the actor pools hold, and without
            # a CPU to bound them every probe would start a worker process of its own (~200 MB each).
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=max(1, decoders // DECODERS_PER_PROBE)),
        )
    plan = ray.remote(num_cpus=0)(probe_segments)
    items = [{"path": v.path, "video_id": v.video_id} for v, _ in todo]
    segments = [s for item, ref in zip(items, [plan.remote(i, **options) for i in items], strict=True)
                for s in _planned(item, ref)]  # fmt: skip
    return len(segments), ray.data.from_items(segments, override_num_blocks=len(segments))


def _planned(item: dict, ref) -> list[dict]:
    """The segments a probing task returned, or the video's error segment when its process
    died on every try (a crash in a demuxer): one file never stops a short job either."""
    import ray

    from fer.video.plan import error_segment

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        return [error_segment(item, f"probing died on every try: {type(exc).__name__}")]


def _stages(todo, config: LabelConfig, model_path: Path, counter, pools: _Pools):
    """:func:`_dataset`'s stages, built under its data context."""
    import ray

    from fer.video.stages import Classify, DecodeDetect

    blocks, ds = _segments(todo, config, counter, pools.initial_decoders)
    on_cpus = not config.gpus
    ds = ds.map_batches(
        DecodeDetect,
        fn_constructor_kwargs={**_decode_options(config), "counter": counter, "nice": DECODER_NICE},
        batch_size=1,
        # A decoder per segment from the start (fewer for fewer segments), more as an autoscaling
        # cluster adds nodes (without --decoders no maximum but the CPUs); one segment at a time,
        # so none waits queued behind another while a decoder idles.
        compute=ray.data.ActorPoolStrategy(
            min_size=1,
            initial_size=min(pools.initial_decoders, blocks),
            max_size=pools.decoders,
            max_tasks_in_flight_per_actor=1,
        ),
        num_cpus=1 - CLASSIFIER_CPUS if on_cpus else 1,
    )
    return ds.map_batches(
        Classify,
        fn_constructor_kwargs=_classify_options(config, model_path, threads=pools.threads),
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=pools.classifiers),
        num_gpus=0 if on_cpus else 1,
        # Not a core of its own: it shares the decoders' cores, ahead of them (CPU mode), or only
        # feeds its GPU; a core of its own would idle where faces are few.
        num_cpus=CLASSIFIER_CPUS if on_cpus else 0,
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
            "margin": config.margin, "align": config.align, "detect_every": config.detect_every,
            "persons": config.persons}  # fmt: skip


#: The most frames (of all a job's videos, as their containers state) that ``engine="auto"``
#: labels in this process: about the break-even with starting Ray (~15 s) and decoding on
#: every core, measured on 2 cores; a short clip then gives its first result in seconds.
PROCESS_MAX_FRAMES = 1000
#: ... and the most videos (each is opened to read its frame count).
PROCESS_MAX_VIDEOS = 8


def runs_here(config: LabelConfig, todo) -> bool:
    """Whether this job runs in this process (see :attr:`LabelConfig.engine`): photos, however
    many (a decoder per core here beats starting Ray), and short jobs."""
    from fer.video.decode import is_still

    if config.engine != "auto":
        return config.engine == "process"
    if cluster_address(config.address) or config.gpus:
        return False
    if all(is_still(v.path) for v, _ in todo):
        return True
    return len(todo) <= PROCESS_MAX_VIDEOS and sum(_frame_count(v.path) for v, _ in todo) <= PROCESS_MAX_FRAMES


def _frame_count(path: str) -> int:
    """The frame count a video's container states (opening it only; 1 for an image, 0 when unreadable)."""
    import cv2

    from fer.video.decode import is_still

    if is_still(path):
        return 1
    cap = cv2.VideoCapture(path)
    try:
        return max(0, int(min(cap.get(cv2.CAP_PROP_FRAME_COUNT), 2**31))) if cap.isOpened() else 0
    finally:
        cap.release()


def label_here(job: _Run) -> None:
    """:func:`label_on_ray` in this process, for short jobs and photos: the same stages called
    directly (no Ray to start), decoders in threads (OpenCV and LiteRT let go of Python's lock),
    one per core (at most ``--decoders``). Every video is probed first, so broken files are
    reported at once; the model then loads in a thread while the first videos are decoded (and
    not at all without faces). Rows are classified ``batch_size`` at a time, so a folder of
    photos is classified, aggregated and recorded in batches, each photo still its own video."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import closing
    from functools import partial

    from fer.video.plan import probe_segments
    from fer.video.progress import Counter
    from fer.video.stages import Classify, DecodeDetect, with_probs

    config, counter, writer = job.config, Counter(), job.writer()
    videos = lambda: (writer.videos_finished, writer.failed, len(job.plan.todo))  # noqa: E731
    threads = max(1, min(config.decoders or _cores(), len(job.plan.todo)))
    probe = partial(probe_segments, segment_seconds=config.segment_seconds, counter=counter, sample_fps=config.fps)
    with Display(counter, videos, job.progress) as display, ThreadPoolExecutor(1) as loader:
        with ThreadPoolExecutor(threads) as pool:
            items = [{"path": v.path, "video_id": v.video_id} for v, _ in job.plan.todo]
            segments = [s for found in pool.map(probe, items) for s in found]
        decoders: list = []
        if any(not s["error"] for s in segments):
            loading = loader.submit(Classify, **_classify_options(config, job.model_path, threads=0))
            decoders = [DecodeDetect(**_decode_options(config), counter=counter) for _ in range(threads)]
        predict = lambda crops: loading.result().model.predict(crops, tta=config.tta)  # noqa: E731
        with closing(_decoded(segments, decoders)) as decoded:  # closed at once on a Ctrl-C or a failed write
            for batch in _batched(decoded, config.batch_size):
                writer.add(with_probs(batch, predict))
    writer.finish_incomplete()
    job.summary.probes = counter.snapshot().get("probes", 0)
    job.summary.rows_dropped = writer.collector.dropped
    job.summary.sampled = display.sampled(job.t0)


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _decoded(segments: list[dict], decoders: list) -> Iterator[dict]:
    """The row chunks of ``segments`` (any order), decoded by ``decoders`` in a thread each, a
    few segments ahead of the caller (memory stays bounded on a folder of 10^5 photos)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from queue import SimpleQueue

    from fer.video.plan import as_batch
    from fer.video.stages import DecodeDetect

    free: SimpleQueue = SimpleQueue()
    for decoder in decoders:
        free.put(decoder)

    def decode(segment: dict) -> list[dict]:
        batch = as_batch(segment)
        if segment["error"]:
            return [DecodeDetect.failed(batch)]
        decoder = free.get()
        try:
            return list(decoder(batch))
        finally:
            free.put(decoder)

    pool = ThreadPoolExecutor(max(1, len(decoders)))
    ahead: deque = deque()
    try:
        for segment in segments:
            ahead.append(pool.submit(decode, segment))
            if len(ahead) > 4 * max(1, len(decoders)):
                yield from ahead.popleft().result()
        while ahead:
            yield from ahead.popleft().result()
    finally:  # a Ctrl-C or a failed write stops the run now, not after the segments queued
        pool.shutdown(wait=True, cancel_futures=True)


def _batched(chunks: Iterator[dict], size: int) -> Iterator[dict]:
    """Row chunks joined into batches of ``size`` faces or ``size`` rows, whichever comes first
    (photos without a face count too: a folder of landscapes is still written as it goes)."""
    import numpy as np

    def joined(pending: list[dict]) -> dict:
        return {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}

    pending: list[dict] = []
    faces = rows = 0
    for chunk in chunks:
        pending.append(chunk)
        faces, rows = faces + int(chunk["has_face"].sum()), rows + len(chunk["has_face"])
        if faces >= size or rows >= size:
            yield joined(pending)
            pending, faces, rows = [], 0, 0
    if pending:
        yield joined(pending)
