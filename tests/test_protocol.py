"""The driver's protocol without Ray: rows in tagged chunks, in any grouping and order, replays
dropped, each video finished once; a video that yields no frame becomes a failed entry."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fer.storage import Location
from fer.video import manifest, protocol
from fer.video.align import MARGIN
from fer.video.faces import MIN_FACE
from fer.video.inputs import VideoInput, content_id, video_id
from fer.video.pipeline import LabelConfig, LabelSummary
from fer.video.plan import as_batch, probe_segments
from fer.video.protocol import Collector
from fer.video.stages import DecodeDetect
from tests.conftest import SAMPLES


def chunks(vid: str, segments: list[int], n_segments: int | None = None) -> list[dict[str, np.ndarray]]:
    """The chunks a decoder sends for a video whose segment k has ``segments[k]`` rows (chunks of 3)."""
    n_segments = len(segments) if n_segments is None else n_segments
    out = []
    for seg, rows in enumerate(segments):
        for start in range(0, rows, 3):
            row = np.arange(start, min(rows, start + 3))
            last = row[-1] == rows - 1
            out.append({
                "video_id": np.full(len(row), vid), "segment": np.full(len(row), seg), "row": row,
                "seg_rows": np.full(len(row), rows if last else -1), "n_segments": np.full(len(row), n_segments),
                "frame": seg * 100 + row, "chunk": np.full(len(row), start // 3),
                "box": np.tile(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), (len(row), 1)),
            })  # fmt: skip
    return out


def regroup(parts: list[dict[str, np.ndarray]], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    """The rows of ``parts`` in batches of ``sizes`` (as a classifier's batches cut and join chunks)."""
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    edges = np.cumsum([0, *sizes])
    return [{k: v[a:b] for k, v in rows.items()} for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def test_a_video_finishes_once_with_every_row_whatever_the_batches():
    a, b = chunks("a", [7, 4]), chunks("b", [5])
    parts = [a[0], b[0], a[1], a[3], b[1], a[2], a[4]]  # interleaved, out of order
    collector = Collector(["a", "b"])
    done = [d for batch in regroup(parts, [4, 1, 6, 3, 2]) for d in collector.add(batch)]
    assert [vid for vid, _ in done] == ["b", "a"]
    rows = dict(done)
    assert sorted(rows["a"]["frame"]) == [*range(7), *range(100, 104)] and sorted(rows["b"]["frame"]) == list(range(5))
    assert collector.dropped == 0 and collector.unfinished() == {}


def test_a_replay_is_dropped_and_rows_of_finished_or_unplanned_videos_too():
    a = chunks("a", [7])
    collector = Collector(["a"])
    assert collector.add(a[0]) == [] and collector.add(a[1]) == []
    # The decoder died and its task was tried again: the same chunks come again, from the first.
    (done,) = [d for part in a for d in collector.add(part)]
    assert sorted(done[1]["frame"]) == list(range(7))  # each row once
    assert collector.dropped == 6
    for part in [*a, *chunks("stranger", [2])]:
        assert collector.add(part) == []
    assert collector.dropped == 6 + 7 + 2 and not collector.conflicts


def test_a_replay_with_other_rows_at_the_same_places_is_a_conflict():
    """A retry that found one face more or less sends other rows under the same row numbers."""
    a = chunks("a", [7])
    collector = Collector(["a"])
    collector.add(a[0])
    other = {k: v.copy() for k, v in a[0].items()}
    other["frame"] = other["frame"] + 1  # the same places, frames one on
    assert collector.add(other) == [] and collector.conflicts == {"a": {0}}


def test_a_video_missing_a_segment_is_unfinished_with_the_segment_named():
    a = chunks("a", [3, 4, 2])
    collector = Collector(["a", "never"])
    for part in a[:1] + a[3:]:  # segment 1's chunks never arrive
        assert collector.add(part) == []
    reasons = collector.unfinished()
    assert reasons["a"].startswith("segment(s) 1 of 3 never finished")
    assert reasons["never"].startswith("no row of it arrived")


@pytest.fixture
def writer(tmp_path, untrained_bundle):
    """A writer of one planned video (single_face.mp4) into ``tmp_path``."""
    from fer import bundle
    from fer.video.output import VideoWriter

    path = str(SAMPLES / "single_face.mp4")
    video = VideoInput(path, video_id(path), content_id(path))
    config = LabelConfig(inputs=(path,), out=str(tmp_path), model=str(untrained_bundle))
    summary = LabelSummary(out=Location.parse(str(tmp_path)))
    for folder in ("timelines", "aggregates", "manifest"):
        (tmp_path / folder).mkdir()
    inputs = {video.video_id: (video, "key")}
    return VideoWriter(config, bundle.read_meta(untrained_bundle), "litert", inputs, {}, summary, time.time()), video


def test_a_video_that_yields_no_frame_is_a_failed_entry_not_a_crash(writer, tmp_path):
    """Its probe succeeded, but no decoded frame matches its time table (here: the table moved
    by a second): the decoder finds no frame; the video is failed with a reason."""
    writer, video = writer
    (seg,) = probe_segments({"path": video.path, "video_id": video.video_id}, segment_seconds=60.0)
    seg["times_ms"] = seg["times_ms"] + 5000.0  # after the clip's end: nothing decoded matches
    decoder = DecodeDetect(detector="yunet", min_face=MIN_FACE, sample_fps=None, margin=MARGIN, align=True)
    for rows in decoder(as_batch(seg)):
        rows["probs"] = np.full((len(rows.pop("crop")), 7), np.nan, np.float32)
        writer.add(rows)
    (entry,) = writer.summary.entries
    assert entry.status == manifest.FAILED and entry.reason.startswith("no frame could be decoded")
    assert manifest.load(tmp_path)[video.video_id].status == manifest.FAILED
    assert not (tmp_path / "timelines" / f"{video.video_id}.parquet").exists()


def test_status_rules():
    def data(frames, declared, missing, errors=("",)):
        frames = np.asarray(frames)
        n = len(frames)
        return {"frame": frames, "declared": np.full(n, declared), "frames": np.full(n, 72),
                "seg_rows": np.r_[np.full(n - 1, -1), n], "seg_frames": np.full(n, len(set(frames[frames >= 0]))),
                "segment": np.zeros(n, int), "seg_missing": np.full(n, missing), "chunk": np.arange(n) // 10,
                "error": np.asarray(list(errors) * n, object)[:n]}  # fmt: skip

    assert protocol.status(data(range(72), 72, 0)) == (manifest.DONE, "")
    assert protocol.status(data(range(71), 72, 1)) == (
        manifest.PARTIAL, "71 of the 72 frames the file holds could be decoded (corrupt data)"
    )  # fmt: skip
    assert protocol.status(data(range(72), 120, 0))[0] == manifest.PARTIAL  # the container states 120: truncated
    assert protocol.status(data([-1], 72, 0))[0] == manifest.FAILED
    assert protocol.status(data(range(3), 72, 0, errors=("decoding failed",))) == (manifest.FAILED, "decoding failed")
    # A retry whose rows did not line up with its first try's: a frame lost, a frame's rows in two
    # chunks (it came from both tries), or rows two tries sent differently under one row number.
    lost = data(range(72), 72, 0) | {"seg_frames": np.full(72, 73)}
    twice = data([*range(20), 19, *range(20, 71)], 72, 0)  # frame 19 ends chunk 1 and opens chunk 2
    assert twice["chunk"][19] == 1 and twice["chunk"][20] == 2 and twice["seg_frames"][0] == 71
    for mismatched, conflicts in ((lost, ()), (twice, ()), (data(range(72), 72, 0), [0])):
        status, reason = protocol.status(mismatched, conflicts)
        assert status == manifest.FAILED and reason.startswith("segment(s) 0: the rows of a retried segment"), reason
