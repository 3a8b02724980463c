"""Ends what a fer process's local Ray leaves behind when that process is killed outright.

A driver killed with SIGKILL cannot shut its Ray down. Ray's fate-sharing ends the raylet
and the workers within seconds, but the raylet's agents (dashboard and runtime-env agents)
first try to report the raylet's death to a GCS that is gone, with a fixed 60 s timeout
(``ray._private.utils.publish_error_to_driver``). This watcher, started beside a local Ray,
keeps a list of the driver's descendants and kills those still running once the driver is
gone. Linux only (it reads ``/proc``); elsewhere it is not started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: How often the descendants are listed: new Ray workers start while the driver runs.
SCAN_EVERY_S = 1.0


def _processes() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, start time)`` of every process (start time tells a reused pid)."""
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d.name)] = (int(fields[1]), fields[19])  # ppid, starttime (fields 4 and 22 of stat)
    return out


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> dict[int, str]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = {}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found[child] = table[child][1]
            stack.append(child)
    return found


def watch(driver: int) -> None:
    """Remember ``driver``'s descendants until it exits, then kill those still running."""
    known: dict[int, str] = {}
    while True:
        table = _processes()
        if driver not in table:
            break
        known.update(_descendants(driver, table))
        known.pop(os.getpid(), None)
        time.sleep(SCAN_EVERY_S)
    table = _processes()
    for pid, started in known.items():
        if pid in table and table[pid][1] == started:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(pid, signal.SIGKILL)


def start(driver: int | None = None) -> None:
    """Watch ``driver`` (default: this process) from a detached process of its own."""
    if not sys.platform.startswith("linux"):
        return
    subprocess.Popen(
        [sys.executable, "-m", "fer._reaper", str(driver or os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the driver's process group: Ctrl-C and kills of the group miss it
    )  # fmt: skip


if __name__ == "__main__":
    watch(int(sys.argv[1]))
