"""The docs: the README is a landing page, the CLI reference matches the commands' help, and the
examples a newcomer copies (the README's tour, the getting-started page) run on the shipped samples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CLI_REFERENCE = "docs/cli.md"
#: Fenced blocks a reader runs; set-up commands are fenced ``shell`` and left out (the suite runs installed).
RUNNABLE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def _cog(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cogapp", "--check", CLI_REFERENCE], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert [n for n, line in enumerate(lines, 1) if len(line) > 120] == []


def test_cli_reference_matches_the_commands_help():
    proc = _cog(ROOT)
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\nrun: cog -r {CLI_REFERENCE}"


def test_cli_reference_check_fails_when_an_option_help_changes(tmp_path):
    shutil.copytree(ROOT / "fer", tmp_path / "fer", ignore=shutil.ignore_patterns("__pycache__", "default"))
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / CLI_REFERENCE, tmp_path / CLI_REFERENCE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert _cog(tmp_path, env).returncode == 0  # the scratch copy as it is: up to date
    config = tmp_path / "fer" / "video" / "pipeline.py"
    old = '"Frames per second to sample (default: every frame)."'
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, '"Frames sampled per second (default: all)."'))
    proc = _cog(tmp_path, env)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # cog's status for "would change"
    assert f"Checking {CLI_REFERENCE}  (changed)" in proc.stdout


def _run_blocks(markdown: str, cwd: Path, after: str | None = None) -> None:
    """Run the page's bash and python blocks (those after the heading ``after``) in order, in ``cwd``."""
    if after is not None:
        markdown = markdown[markdown.index(after) :]
    blocks = RUNNABLE.findall(markdown)
    assert blocks, "no runnable examples found"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `fer`
    for kind, code in blocks:
        command = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{kind} block failed:\n{code}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"


def _sample_folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples").symlink_to(ROOT / "data" / "samples")
    return tmp_path


def test_tours_run_in_sequence_on_one_folder(tmp_path):
    """The README's tour, then the getting-started page's, in one folder, as a newcomer runs them."""
    cwd = _sample_folder(tmp_path)
    _run_blocks((ROOT / "README.md").read_text(), cwd, after="## A ten-line tour")
    assert len(list((cwd / "out" / "manifest").glob("*.json"))) == 5  # the five sample clips
    stamps = {p.name: p.stat().st_mtime_ns for p in (cwd / "out" / "manifest").glob("*.json")}
    _run_blocks((ROOT / "docs" / "getting-started.md").read_text(), cwd)
    # Labelled once: the second run skips every video (no manifest entry written again).
    assert {p.name: p.stat().st_mtime_ns for p in (cwd / "out" / "manifest").glob("*.json")} == stamps
    rows = pq.read_table(cwd / "out" / "timelines", filters=[("video_path", "=", "data/samples/single_face.mp4")])
    assert rows.num_rows == 12  # single_face.mp4: 72 frames at 30 frames/s, 5 sampled a second, one face each
    assert "-->" in (cwd / "single_face.srt").read_text()
    assert (cwd / "single_face.png").stat().st_size > 10_000
