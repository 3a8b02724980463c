"""The machine a benchmark ran on, as every figure names it: the CPU's model, the instruction
set that sets the classifier's speed (int8 runs at float speed without AVX-512 VNNI) and the cores."""

from __future__ import annotations

import os
import platform


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = " ".join(value.split())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers where the name alone is vague
    (virtual machines report e.g. "AMD EPYC" for several generations); the platform's processor
    string where there is no ``/proc/cpuinfo``."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def instruction_set() -> str:
    """The widest of AVX-512 VNNI, AVX2 and neither that the CPU has."""
    flags = _cpuinfo().get("flags")
    if flags is None:
        return "instruction set unknown"
    flags = flags.split()
    return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def this_machine() -> str:
    """E.g. "Intel(R) Xeon(R) CPU @ 2.80GHz (family 6, model 85), AVX-512 VNNI, 2 cores"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()}, {instruction_set()}, {cores} cores"
