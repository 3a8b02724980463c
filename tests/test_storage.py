"""Outputs on local paths and on S3 (a real S3 API served by moto on loopback): atomic
writes, listing, labelling into a bucket, re-runs, queries, and clear errors."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from fer import timelines
from fer.errors import FerError
from fer.storage import Location
from fer.video import manifest
from fer.video.inputs import video_id
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES, fer_cli

CLIP = SAMPLES / "single_face.mp4"


def test_local_location_writes_atomically_and_lists(tmp_path):
    folder = Location.parse(tmp_path / "a" / "b")
    folder.makedirs()
    assert folder.is_dir() and not folder.is_file()
    (folder / "x.json").write_bytes(b"1")
    (folder / "x.json").write_bytes(b"22")  # replaced whole
    (folder / ".hidden.json").write_bytes(b"3")
    assert [f.name for f in folder.files(".json")] == ["x.json"]
    assert (folder / "x.json").read_bytes() == b"22"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == [".hidden.json", "x.json"]  # no temp files
    assert Location.parse("rel/dir").path == os.path.abspath("rel/dir")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(FerError, match="cannot use nosuch://x"):
        Location.parse("nosuch://x/y")


def test_s3_location_round_trip(s3):
    folder = Location.parse(f"{s3}/unit")
    assert not folder.exists()
    (folder / "a.parquet").write_bytes(b"abc")
    (folder / "b.txt").write_bytes(b"")
    assert folder.is_dir() and (folder / "a.parquet").is_file()
    assert [f.uri for f in folder.files(".parquet")] == [f"{s3}/unit/a.parquet"]
    assert (folder / "a.parquet").read_bytes() == b"abc"
    folder.check_writable()
    assert [f.name for f in folder.files()] == ["a.parquet", "b.txt"]  # the write check left nothing


def test_label_into_a_bucket_then_query_it(s3, ray_local, untrained_bundle, tmp_path):
    out = f"{s3}/labels"
    config = LabelConfig(inputs=(str(CLIP),), out=out, model=str(untrained_bundle), segment_seconds=1.0)
    summary = run(config, progress=None)
    vid = video_id(CLIP)
    [entry] = summary.entries
    assert entry.status == "done" and entry.frames == 72 and entry.output == f"{out}/timelines/{vid}.parquet"
    assert manifest.load(out)[vid].status == "done"

    # The same video labelled to local disk gives the same rows.
    local = run(LabelConfig(**{**config.__dict__, "out": str(tmp_path)}), progress=None)
    assert local.entries[0].status == "done"
    remote_df, local_df = timelines.read(out), timelines.read(tmp_path)
    pd.testing.assert_frame_equal(remote_df, local_df)
    one = timelines.read(out, videos=vid, faces=0, start=1.0, end=2.0)
    assert len(one) > 0 and one.time_s.between(1.0, 2.0).all() and (one.face_id == 0).all()

    again = run(config, progress=None)
    assert [e.status for e in again.entries] == ["skipped"]
    assert np.isclose(timelines.summarize(remote_df).face_share.iloc[0], 1.0, atol=0.05)

    # The archive index and the persons are in the bucket too; the summary reads the index.
    from fer import index
    from fer.storage import Location

    bucket = Location.parse(out)
    assert (bucket / "index").files(".parquet") and (bucket / "persons").files(".parquet")
    assert index.check(bucket) == (1, [])
    pd.testing.assert_frame_equal(timelines.summary(out), timelines.summary(tmp_path))


def test_cli_labels_to_s3_and_summarises_from_it(s3, untrained_bundle):
    out = f"{s3}/cli"
    proc = fer_cli("label", str(CLIP), "--out", out, "--model", str(untrained_bundle))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"timelines in {out}/timelines" in proc.stdout
    proc = fer_cli("summary", out, "--format", "csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith(video_id(CLIP))


def test_unusable_outputs_fail_before_labelling(s3, untrained_bundle):
    proc = fer_cli("label", str(CLIP), "--out", "s3://no-such-bucket/labels", "--model", str(untrained_bundle))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr  # the storage cannot take the output
    assert "error:" in proc.stderr and "s3://no-such-bucket/labels" in proc.stderr
    proc = fer_cli("summary", f"{s3}/nothing-here")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: no such file or folder: {s3}/nothing-here"
