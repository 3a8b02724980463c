"""Small helpers shared by everything that drives Ray."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fer.errors import FerError

#: The environment of every process that may import TensorFlow: tf-keras instead of Keras 3
#: (Keras 3 cannot run ``MultiWorkerMirroredStrategy``, keras-team/keras#20585), and
#: TensorFlow's C++ log kept to warnings. Set here, in Ray workers and in submitted jobs.
TF_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

#: Set by the command line (:func:`fer.cli.main`): the process is fer's own, so :func:`connect`
#: may quiet other libraries' logs and watch a local Ray with :mod:`fer._reaper`. A program
#: that imports fer keeps its logging, and its children are its own.
OWNS_PROCESS = False
#: Where a command's work runs (``--engine``): ``auto`` (the command's rule), on Ray, or in this process.
ENGINES = ("auto", "ray", "process")


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster named for a command: ``address``, else ``RAY_ADDRESS``, else None (none named)."""
    import os

    return address or os.environ.get("RAY_ADDRESS") or None


def quiet_ray_data() -> None:
    """Keep Ray Data's per-dataset execution logs out of the user's terminal.

    fer prints its own progress; Ray Data's plan dumps and progress bars for the small
    internal datasets (readers, manifests) only bury it. Logs still go to Ray's log files.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    for name in ("ray.data", "ray.train", "ray.tune", "tensorflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise it: a KeyboardInterrupt inside ``ray.init``
    can be swallowed by Ray and leave a half-started Ray under a run that then hangs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def connect(address: str | None = None) -> bool:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), else start a local
    Ray; once per process (a second call keeps the first connection, and refuses another
    ``address``). Returns whether this call connected (the caller then owns the shutdown).

    A local Ray starts without a dashboard: its ten processes hold ~1 GB for a run that ends
    with the command (start a Ray with ``ray start --head`` and pass its address to watch one).
    Under the command line (:data:`OWNS_PROCESS`) Ray Data's logs are quieted and a local Ray
    gets a watcher (:mod:`fer._reaper`) that ends its processes if this one is killed before
    it can shut Ray down.
    """

    import ray

    if ray.is_initialized():
        _check_same_cluster(address)
        return False
    local = not cluster_address(address)
    with ctrl_c_deferred():
        ray.init(address=address, logging_level="WARNING", **({"include_dashboard": False} if local else {}))
    if OWNS_PROCESS:
        quiet_ray_data()
        if local:
            from fer import _reaper

            _reaper.start()
    return True


def _check_same_cluster(address: str | None) -> None:
    """Refuse an ``address`` other than the cluster this process is connected to: keeping the
    connection would run the work somewhere the caller did not ask for."""
    import ray

    if not address or address == "auto" or address.startswith("ray://"):  # a client's port is not the GCS's
        return
    current = ray.get_runtime_context().gcs_address
    if address.split("://")[-1] != current:
        raise FerError(f"--address {address}: this process is already connected to the Ray at {current}")


def require_gpus(wanted: float, what: str) -> None:
    """Refuse before any work starts when the cluster has fewer GPUs than ``wanted``: Ray
    would otherwise wait for them for ever.

    Raises:
        EnvironmentFault: ``what`` (the options asking) needs more GPUs than the cluster has.
    """
    import ray

    from fer.errors import EnvironmentFault

    have = ray.cluster_resources().get("GPU", 0)
    if wanted > have:
        raise EnvironmentFault(
            f"{what} needs {wanted:g} GPUs; the Ray cluster has {have:g} "
            "(an autoscaling cluster must have its GPU nodes up; 0 runs on the CPUs)"
        )
