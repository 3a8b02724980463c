"""Live progress of a labelling run: stages report into one actor, the driver draws it.

The decode actors report the frames they have gone through at least every
:data:`REPORT_EVERY_S` (not per segment: a segment of a 1080p hour can take minutes),
probing reports each video's frame count, and the driver polls the counts from a thread
and draws a bar (a terminal) or prints a line every :data:`PLAIN_EVERY_S` (a log file, a
cluster job's output). Works the same on a cluster: the actor is reached by its handle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

#: How often a stage sends its counts: often enough for a bar that moves every second.
REPORT_EVERY_S = 0.3
#: How often the driver asks for the counts.
POLL_EVERY_S = 0.25
#: Lines printed when stderr is not a terminal: one per 10 s keeps a night's log readable.
PLAIN_EVERY_S = 10.0


class Counter:
    """The run's counts (``frames``: sampled, ``total``: to sample, from the probes): a Ray actor of the
    run (:func:`start_counter`), or a plain object when the run is in one process. It also
    counts the tries of each unit of work (:meth:`attempt`), which outlive the processes that
    die doing it."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.tries: dict[str, int] = {}
        self.lock = threading.Lock()  # this process's decoders are threads (fer.video.engines.label_here)

    def add(self, counts: dict[str, int]) -> None:
        with self.lock:
            for key, n in counts.items():
                self.counts[key] = self.counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def attempt(self, unit: str) -> int:
        """Record a try of ``unit`` (a video's probe, a segment); return how many it has had."""
        with self.lock:
            self.tries[unit] = self.tries.get(unit, 0) + 1
            return self.tries[unit]

    def settle(self, unit: str) -> None:
        """``unit`` is done: forget its tries."""
        with self.lock:
            self.tries.pop(unit, None)


#: Tries of a unit of work (a video's probe, a segment) whose process died before the unit gives
#: up (its video is then failed, saying so): Ray retries a dead process's task without end, which
#: survives lost nodes but would retry a file that crashes its decoder for ever.
MAX_TRIES = 4


def attempt(counter, unit: str) -> int:
    """:meth:`Counter.attempt` on ``counter`` (an actor, a plain object or None: 1)."""
    if counter is None:
        return 1
    call = counter.attempt
    if hasattr(call, "remote"):
        import ray

        return ray.get(call.remote(unit))
    return call(unit)


def settle(counter, unit: str) -> None:
    """:meth:`Counter.settle` on ``counter``, fired and forgotten."""
    if counter is not None:
        call = counter.settle
        call.remote(unit) if hasattr(call, "remote") else call(unit)


def start_counter():
    """A :class:`Counter` actor of this run (no CPU: it only adds numbers), on the driver's node:
    a worker node lost during the run must not take the run's counts with it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(Counter).options(scheduling_strategy=here).remote()


class Reporter:
    """Stage side: accumulates counts and sends them at most every :data:`REPORT_EVERY_S`."""

    def __init__(self, counter) -> None:
        self.counter = counter
        self.pending: dict[str, int] = {}
        self.last = time.monotonic()

    def add(self, **counts: int) -> None:
        for key, n in counts.items():
            self.pending[key] = self.pending.get(key, 0) + n
        if time.monotonic() - self.last >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.counter is not None and self.pending:
            add = self.counter.add
            # An actor's add is fired and forgotten: progress never waits.
            add.remote(self.pending) if hasattr(add, "remote") else add(self.pending)
        self.pending = {}
        self.last = time.monotonic()


def describe(frames: int, total: int, rate: float | None, videos: tuple[int, int, int]) -> str:
    """The progress line: sampled frames done of those planned, rate after start-up, ETA, videos."""
    done, failed, count = videos
    finished = bool(total) and frames >= total
    eta = "00:00" if finished else "--:--" if not rate else _clock((total - frames) / rate)
    # A short run can finish before there is a rate to show.
    speed = f"{rate:.0f} frames/s" if rate else "all sampled" if finished else "starting"
    videos = f"videos {done}/{count} finished, {failed} failed"
    return f"sampled frames {frames}/{total or '?'}  {speed}  ETA {eta}  {videos}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Display:
    """Driver side: polls ``counter`` and ``videos()`` (done, failed, count) in a thread and
    shows the line on ``stream``: a rich progress bar on a terminal, else a plain line every
    :data:`PLAIN_EVERY_S`. The rate counts from the first frame, so start-up is not in it."""

    def __init__(self, counter, videos: Callable[[], tuple[int, int, int]], stream: TextIO | None):
        self.counter = counter
        self.videos = videos
        self.stream = stream
        self.bar = None
        #: When the first frames were reported (wall clock) and how many.
        self.first: tuple[float, int] | None = None
        #: When the frame count last grew (wall clock), and to what.
        self.last: tuple[float, int] | None = None
        self.counts: dict[str, int] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="fer-progress", daemon=True)

    def __enter__(self) -> Display:
        if self.stream is None:
            return self
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("labelling"), BarColumn(), TextColumn("{task.fields[line]}"),
                console=Console(file=self.stream), refresh_per_second=4,
            )  # fmt: skip
            self.task = self.bar.add_task("label", total=None, line="starting")
            self.bar.start()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
            self._poll()
            self._show()
        if self.bar is not None:
            self.bar.stop()

    def sampled(self, t0: float) -> tuple[tuple[float, int], tuple[float, int]] | None:
        """When (seconds from ``t0``, wall clock) the first frames were seen and how many, and
        when the count last grew and to what; None when no frame was seen."""
        if self.first is None or self.last is None:
            return None
        return (self.first[0] - t0, self.first[1]), (self.last[0] - t0, self.last[1])

    def _loop(self) -> None:
        last_plain = time.monotonic()
        while not self.stopped.wait(POLL_EVERY_S):
            self._poll()
            if self.bar is not None:
                self._show()
            elif time.monotonic() - last_plain >= PLAIN_EVERY_S:
                last_plain = time.monotonic()
                self._show()

    def _poll(self) -> None:
        snapshot = self.counter.snapshot
        try:
            if hasattr(snapshot, "remote"):
                import ray

                self.counts = ray.get(snapshot.remote(), timeout=10)
            else:
                self.counts = snapshot()
        except Exception:  # noqa: BLE001 - a slow or lost poll only delays the display
            return
        frames = self.counts.get("frames", 0)
        if self.first is None and frames:
            self.first = (time.time(), frames)
        if frames and (self.last is None or frames > self.last[1]):
            self.last = (time.time(), frames)

    def _show(self) -> None:
        frames, total = self.counts.get("frames", 0), self.counts.get("total", 0)
        frames = min(frames, total) if total else frames  # retried work counts twice
        rate = None
        if self.first is not None and time.time() > self.first[0] + 0.5:
            rate = (frames - self.first[1]) / (time.time() - self.first[0]) or None
        text = describe(frames, total, rate, self.videos())
        if self.bar is not None:
            self.bar.update(self.task, completed=frames, total=total or None, line=text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
