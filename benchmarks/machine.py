"""The machine a benchmark ran on, as every figure names it: the CPU's model, the instruction
set that sets the classifier's speed (int8 runs at float speed without AVX-512 VNNI) and the cores."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def instruction_set() -> str:
    """The widest of AVX-512 VNNI, AVX2 and neither that the CPU has."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return "instruction set unknown"
    return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def this_machine() -> str:
    """E.g. "Intel(R) Xeon(R) CPU @ 2.80GHz, AVX-512 VNNI, 2 cores"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()}, {instruction_set()}, {cores} cores"
