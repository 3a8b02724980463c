"""Every benchmark script runs: its ``--smoke`` mode (tiny sizes, seconds to a minute), so a change
of schema or API that breaks one fails here, not the next time someone measures with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fer.bundle import DEFAULT_BUNDLE

from .conftest import FER2013, FERPLUS, ROOT

SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "machine")
#: The shared data each script reads, where it reads any.
READS = {"alignment": FER2013, "classifier": FER2013, "ensembles": FER2013, "train_throughput": FER2013,
         "robustness": FERPLUS, "other_tools": FERPLUS, "frontier": FERPLUS}  # fmt: skip
#: Arguments beyond ``--smoke``.
ARGS = {"ensembles": [str(DEFAULT_BUNDLE), "--tta", "none"]}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_mode_runs(script):
    if script in READS and not READS[script].is_dir():
        pytest.skip(f"{READS[script]} is not present")
    proc = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--smoke", *ARGS.get(script, [])], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip(), proc.stderr[-2000:]
