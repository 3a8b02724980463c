"""What fer shows in the terminal, and where everything else goes.

stdout holds results only (a summary table, JSON, a file name); stderr holds fer's own
progress and warnings. Ray and TensorFlow print a dozen lines of their own on every run,
from Python and from C++, in the driver and in every worker (Ray forwards worker output
to the driver). :func:`quiet` sends all of it to a log file by redirecting file
descriptors 1 and 2 (so C++ writes and child processes are caught too) and passes
through only fer's own lines, those carrying :data:`MARK`. ``-v`` turns it off.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

#: Lines with this mark are fer's own messages (e.g. training's per-epoch figures printed in a
#: Ray worker): shown on the terminal, without the mark, even when the rest is logged.
MARK = "[fer] "
#: The prefix Ray puts on lines it forwards from a worker: "(RayTrainWorker pid=12) ", coloured.
_WORKER_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?\([^)]*\)(?:\x1b\[0m)?\s*")


def warn(message: str) -> None:
    """Tell the user of something fer passed over (on stderr, shown even when the frameworks'
    output is filed: the line carries :data:`MARK`)."""
    sys.stderr.write(f"{MARK}warning: {message}\n")
    sys.stderr.flush()


class _Sieve(io.TextIOBase):
    """A text stream that writes everything to ``log`` and shows fer's marked lines on ``show``."""

    def __init__(self, log: TextIO, show: TextIO):
        self.log = log
        self.show = show
        self.pending = ""

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):  # a full disk must not break the run over its log
            self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            at = line.find(MARK)
            if at >= 0:
                self.show.write(line[at + len(MARK) :] + "\n")
                self.show.flush()
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self.log.flush()

    def fileno(self) -> int:
        return self.log.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


def user_logs() -> Path:
    """Where commands without an output folder (``fer evaluate``) file their logs."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "fer" / "logs"


def stamp() -> str:
    """A run's name in its log files: the local start time, sortable."""
    return time.strftime("%Y%m%d-%H%M%S")


@contextmanager
def quiet(log_file: Path | None, *, verbose: bool = False) -> Iterator[TextIO]:
    """Send everything printed inside the block to ``log_file`` but fer's marked lines.

    Yields the terminal's stderr, for progress and warnings. With ``verbose`` (or no log
    file) the frameworks' output is shown, on stderr: stdout stays for results either way
    (Ray forwards worker stdout to the driver's). The log stays open after the block:
    loggers created inside it may write to it until the process ends.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    if verbose or log_file is None:
        terminal = sys.stderr
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - see docstring
        terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout, sys.stderr = _Sieve(log, terminal), _Sieve(log, terminal)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        sys.stdout, sys.stderr = saved_streams


def versions() -> dict[str, str]:
    """fer's version, the shipped model's id and the versions of what fer runs on, read
    without importing TensorFlow or Ray (``fer --version`` and every run log)."""
    import platform
    from importlib import metadata

    from fer import __version__
    from fer.bundle import DEFAULT_BUNDLE, read_meta

    def first(*dists: str) -> str:
        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    try:
        model = read_meta(DEFAULT_BUNDLE)["id"]
    except Exception as exc:  # noqa: BLE001 - a broken install still reports its versions
        model = f"unreadable ({exc})"
    return {
        "fer": __version__,
        "default model": model,
        "ray": first("ray"),
        "tensorflow": first("tensorflow", "tensorflow-cpu"),
        "tf-keras": first("tf-keras"),
        "opencv": first("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
        "onnxruntime": first("onnxruntime", "onnxruntime-gpu"),
        "litert": first("ai-edge-litert"),
        "python": platform.python_version(),
    }
