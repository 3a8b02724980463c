"""``fer check``: does a labelling output agree with its manifest, and repair it when not.

The manifest is the source of truth (:mod:`fer.video.manifest`): a timeline counts only
when its video's entry says ``done`` or ``partial``. A crash between writes, a failed
re-run or a file replaced since labelling can leave files the manifest does not vouch for;
the readers already ignore them, and this finds them so they can be removed:

- orphans: timelines and aggregates of videos with no counting entry;
- missing: entries that say done but whose timeline is gone (a re-run redoes them once
  their entry is dropped);
- temporary files of interrupted writes;
- videos whose rows in the archive index (:mod:`fer.index`) are stale or differ from their
  per-video aggregates (queries mend them; ``compact`` merges the index's files into one).

Files written in the last :data:`IN_FLIGHT_S` seconds may be a running ``fer label``'s (a
temporary before its rename, a timeline before its entry): they are reported and left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fer.schema import AGGREGATES_DIR, PERSONS_DIR, TIMELINES_DIR
from fer.storage import Location
from fer.video import manifest

#: Younger files may be a running job's writes in progress (each lasts well under a second).
IN_FLIGHT_S = 600.0


@dataclass
class CheckReport:
    """What :func:`check` found (and, with ``repair``, removed)."""

    out: Location
    videos: int = 0
    orphans: list[Location] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    temporary: list[Location] = field(default_factory=list)
    recent: list[Location] = field(default_factory=list)
    repaired: bool = False
    #: Videos whose index rows equal their aggregates, and the others (stale, missing, different).
    indexed: int = 0
    unindexed: list[str] = field(default_factory=list)
    #: With ``compact``: the index files merged into one.
    compacted: int = 0

    @property
    def consistent(self) -> bool:
        return not (self.orphans or self.missing or self.temporary)

    def lines(self) -> list[str]:
        """The report for people: one line per problem, then the verdict."""
        done = "removed" if self.repaired else "found"
        out = [f"orphan (no manifest entry counts it), {done}: {f}" for f in self.orphans]
        out += [f"missing timeline of a done video, entry {'dropped' if self.repaired else 'found'}: {v}"
                for v in self.missing]  # fmt: skip
        out += [f"temporary file of an interrupted write, {done}: {f}" for f in self.temporary]
        out += [f"written in the last {IN_FLIGHT_S / 60:.0f} min, maybe by a running fer label; left alone: {f}"
                for f in self.recent]  # fmt: skip
        if self.compacted:
            out.append(f"index: {self.compacted} files compacted into one")
        if self.unindexed:
            done = (
                "rebuilt from their files" if self.repaired else "stale, missing or different; --repair rebuilds them"
            )
            out.append(f"index: {len(self.unindexed)} video(s) {done}: "
                       f"{', '.join(self.unindexed[:5])}{' ...' if len(self.unindexed) > 5 else ''}")  # fmt: skip
        elif self.indexed:
            out.append(f"index: {self.indexed} videos, row for row as their per-video aggregates")
        if self.consistent:
            out.append(f"{self.out}: {self.videos} videos, timelines and manifest agree")
        elif self.repaired:
            out.append(f"{self.out}: repaired; {self.videos} videos, timelines and manifest agree now")
        else:
            out.append(f"{self.out}: {len(out)} problem(s); fer check {self.out} --repair removes them")
        return out


def check(out: str | Location, *, repair: bool = False, compact: bool = False) -> CheckReport:
    """Compare a ``fer label`` output's files with its manifest and its archive index; with
    ``repair``, remove the orphans and temporary files and drop the entries whose timelines are
    missing; with ``compact``, merge the index's files into one first.

    Example: ``check("out", repair=True).lines()``
    """
    from fer import index

    out = out if isinstance(out, Location) else Location.parse(out)
    compacted = index.compact(out)[0] if compact else 0
    entries = manifest.load(out)
    counted = {vid for vid, e in entries.items() if e.status in manifest.LABELLED}
    report = CheckReport(out=out, videos=len(counted), compacted=compacted)
    report.indexed, report.unindexed = index.check(out)
    timelines = {f.stem for f in (out / TIMELINES_DIR).files(".parquet")}
    for folder in (TIMELINES_DIR, AGGREGATES_DIR, PERSONS_DIR):
        report.orphans += [f for f in (out / folder).files(".parquet") if f.stem not in counted]
        report.temporary += [f for f in _hidden(out / folder) if f.name.endswith(".tmp")]
    for folder in (manifest.MANIFEST_DIR, index.INDEX_DIR):
        report.temporary += [f for f in _hidden(out / folder) if f.name.endswith(".tmp")]
    report.missing = sorted(counted - timelines)
    now = time.time()
    report.recent = [f for f in report.orphans + report.temporary if now - _mtime(f) < IN_FLIGHT_S]
    report.orphans = [f for f in report.orphans if f not in report.recent]
    report.temporary = [f for f in report.temporary if f not in report.recent]
    if repair and report.unindexed:
        index.mend(out, report.unindexed)
        report.repaired = True
    if repair and not report.consistent:
        for f in report.orphans + report.temporary:
            f.delete()
        for vid in report.missing:
            manifest.remove(out, vid)
        report.repaired = True
        report.videos -= len(report.missing)
    return report


def _mtime(f: Location) -> float:
    """A file's modification time (seconds since the epoch; 0 when the store does not say)."""
    info = f.fs.get_file_info(f.path)
    return info.mtime.timestamp() if info.mtime is not None else 0.0


def _hidden(folder: Location) -> list[Location]:
    """The hidden files of a folder (where interrupted atomic writes leave their temporaries)."""
    import pyarrow.fs as pafs

    infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    return [folder / i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.startswith(".")]
