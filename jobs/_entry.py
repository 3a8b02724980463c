"""Shared start-up for the job entrypoints: make the uploaded working directory importable."""

from __future__ import annotations

import sys
from pathlib import Path


def run_command(command: str) -> None:
    """Run ``fer COMMAND ARGS...`` with this process's arguments, as the CLI would."""
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:  # `python jobs/x.py` puts jobs/, not the working dir, on the path
        sys.path.insert(0, str(root))
    from fer.cli import main

    sys.argv = ["fer", command, *sys.argv[1:]]
    main()
