"""Figures stated once: every speed figure fer's docs, CHANGELOG or code comments quote is a figure of
the benchmarks page, and every section of that page names the machine and the day it was measured on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
#: The speed figures held to the rule: a number (or a range or list of them) before one of these units.
UNITS = r"frames/s|photos/s|faces/s|rows/s|ms\s+a\s+face|ms\s+of\s+a\s+core|x\s+faster|x\s+slower"
NUMBER = r"\d[\d,]*(?:\.\d+)?"
QUOTED = re.compile(rf"((?:{NUMBER}\s*(?:-|/|and|to|,)\s*)*{NUMBER})\s*(?:{UNITS})\b")
#: Pages that quote: everything a reader sees but the benchmarks page itself (and the generated CLI reference).
QUOTING = ["README.md", "CHANGELOG.md", "docs/*.md", "*/README.md", "fer/**/*.py", "fer/**/*.md", "benchmarks/*.py"]
#: The CPUs and instruction sets a section may name, and a date.
MACHINE = (re.compile(r"Xeon|EPYC|Core i\d|Ryzen"), re.compile(r"AVX2|AVX-512"), re.compile(r"\d cores?"))
DATE = re.compile(r"20\d\d-\d\d")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(NUMBER, text)}


def held(benchmarks: str) -> set[str]:
    """The figures of the benchmarks page: the numbers of its tables' rows and those it states with a
    unit (not its dates, counts and other numbers of prose)."""
    rows = [line for line in benchmarks.splitlines() if line.startswith("|")]
    return _numbers("\n".join(rows)) | {n for m in QUOTED.finditer(benchmarks) for n in _numbers(m.group(1))}


def unsourced(text: str, benchmarks: str) -> list[tuple[int, str]]:
    """The speed figures ``text`` quotes (across line breaks too) that ``benchmarks`` does not hold:
    (line, figure as quoted). A figure in quotes (``"16909 frames/s"``) quotes printed output, not a speed."""
    figures = held(benchmarks)
    found = []
    for match in QUOTED.finditer(text):
        quoted = text[match.start() - 1 : match.start()] == '"' and text[match.end() : match.end() + 1] == '"'
        if not quoted and not _numbers(match.group(1)) <= figures:
            found.append((text.count("\n", 0, match.start()) + 1, " ".join(match.group(0).split())))
    return found


def _quoting_files() -> list[Path]:
    files = {p for pattern in QUOTING for p in ROOT.glob(pattern)}
    return sorted(files - {BENCHMARKS, ROOT / "docs" / "cli.md"})


def test_every_speed_figure_quoted_is_on_the_benchmarks_page():
    benchmarks = BENCHMARKS.read_text()
    missing = {}
    for path in _quoting_files():
        for line, figure in unsourced(path.read_text(), benchmarks):
            missing[f"{path.relative_to(ROOT)}:{line}"] = figure
    assert missing == {}, "quote these from docs/benchmarks.md (or measure them there first)"


def test_the_check_finds_a_figure_the_page_lacks():
    page = "One run, 2026-12-07, on 2 cores: 9.3 ms a face.\n\n| 1080p | 54.8 | 1,222 |\n"
    assert unsourced("54.8 frames/s and 1,222 faces/s, 54.8-1222 frames/s; 9.3 ms a face", page) == []
    assert unsourced("at 54.9 frames/s", page) == [(1, "54.9 frames/s")]
    assert unsourced("x\n54.8 and 61.0\nframes/s", page) == [(2, "54.8 and 61.0 frames/s")]
    assert unsourced("2.6x faster; 1.5x\nslower", page) == [(1, "2.6x faster"), (1, "1.5x slower")]
    assert unsourced("at 2026 frames/s on 2 cores", page) == [(1, "2026 frames/s")]  # a date is no figure
    assert unsourced('once read "16909 frames/s"', page) == []


def test_every_benchmarks_section_names_its_machine_and_day():
    sections = re.split(r"^## ", BENCHMARKS.read_text(), flags=re.M)[1:]
    assert len(sections) >= 10
    unnamed = {}
    for section in sections:
        title = section.splitlines()[0]
        lacks = [p.pattern for p in (*MACHINE, DATE) if not p.search(section)]
        if lacks:
            unnamed[title] = lacks
    assert unnamed == {}
