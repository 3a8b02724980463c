"""Persons: tracks joined by their faces across cuts, never two faces of one frame, read back everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fer import timelines
from fer.errors import FerError
from fer.schema import NO_PERSON
from fer.video.persons import assign_persons, cluster
from fer.video.pipeline import LabelConfig, run

from . import cuts
from .conftest import SAMPLES, fer_cli


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_cluster_joins_near_groups_and_never_tracks_seen_together():
    rng = np.random.default_rng(0)
    a, b = _unit(rng.normal(size=128)), _unit(rng.normal(size=128))
    vectors = np.stack([a, a + 0.01, b, b + 0.01, a + 0.02])
    apart = np.zeros((5, 5), bool)
    assert sorted(map(sorted, cluster(vectors, apart, 0.6))) == [[0, 1, 4], [2, 3]]
    apart[0, 4] = apart[4, 0] = True  # tracks 0 and 4 share a frame: two people however alike
    groups = sorted(map(sorted, cluster(vectors, apart, 0.6)))
    assert [0, 4] not in groups and not any({0, 4} <= set(g) for g in groups)
    assert len(groups) == 3
    assert len(cluster(vectors, np.zeros((5, 5), bool), 0.001)) == 5  # nothing is that close


def test_assign_persons_uses_the_best_views_and_numbers_persons_by_first_appearance():
    rng = np.random.default_rng(1)
    a, b = _unit(rng.normal(size=128)), _unit(rng.normal(size=128))
    nan = np.full(128, np.nan, np.float32)
    # rows: (face_id, frame, descriptor, quality); track 2 is b, seen first; track 0's worst view is b-like.
    rows = [(2, 0, b, 1.0), (0, 1, a, 5.0), (0, 2, a, 4.0), (0, 3, b, 0.1), (1, 9, a, 3.0), (3, 9, nan, np.nan),
            (-1, 10, nan, np.nan)]  # fmt: skip
    face_id = np.array([r[0] for r in rows], np.int32)
    frame = np.array([r[1] for r in rows])
    persons = assign_persons(face_id, frame, np.stack([r[2] for r in rows]), np.array([r[3] for r in rows]))
    # BEST_VIEWS = 5 keeps track 0's b-like view too, but a dominates its mean: 0 and 1 are one person.
    assert persons.row_person.tolist() == [0, 1, 1, 1, 1, NO_PERSON, NO_PERSON]
    assert persons.tracks == [[2], [0, 1]]
    assert persons.descriptors.shape == (2, 128)
    assert persons.best_rows == [0, 1]  # each person's best-scored described view


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A clip of 10 shots (seed 1: the woman in three, the man in the car in three), labelled
    in 1-s segments, and the scene of each of its frames."""
    tmp = tmp_path_factory.mktemp("persons")
    scenes: list[str] = []
    cut = cuts.build(tmp / "people.mp4", shots=10, seed=1, scenes=scenes)
    out = tmp / "out"
    summary = run(LabelConfig(inputs=(str(tmp / "people.mp4"),), out=str(out), segment_seconds=1.0, engine="process"))
    assert summary.count("done") == 1
    df = timelines.read(out)
    shot_of = np.searchsorted(cut, df.frame.to_numpy(), side="right")
    return out, df.assign(scene=np.asarray(scenes)[shot_of])


def test_a_persons_tracks_are_joined_across_cuts(built):
    out, df = built
    faces = df[df.face_id >= 0]
    people = faces[faces.scene.isin(["woman", "car"])]
    assert people.groupby("scene").face_id.nunique().min() >= 3  # a track per shot: the cuts split them
    assert (people.person >= 0).all()
    # One person per real person, and each person one real person.
    assert people.groupby("scene").person.nunique().to_dict() == {"car": 1, "woman": 1}
    assert people.groupby("person").scene.nunique().max() == 1
    stored = pq.read_table(out / "persons" / f"{df.video_id[0]}.parquet").to_pandas()
    assert sorted(stored.person) == sorted(faces.person[faces.person >= 0].unique())
    assert all(len(d) == 128 for d in stored.descriptor)
    for row in stored.itertuples():
        assert sorted(faces[faces.person == row.person].face_id.unique()) == sorted(row.face_ids)
        assert row.rows == (faces.person == row.person).sum()


def test_summary_and_minutes_by_person(built):
    out, df = built
    table = timelines.summary(out, by="person")
    faces = df[df.person >= 0]
    assert table.person.tolist() == sorted(faces.person.unique())
    assert table.frames.tolist() == faces.groupby("person").size().tolist()
    assert table.faces.tolist() == faces.groupby("person").face_id.nunique().tolist()
    minutes = timelines.emotion_minutes(out, by="person")
    assert len(minutes) == len(table)
    result = fer_cli("summary", str(out), "--by", "person", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(pd.io.common.StringIO(result.stdout)).person.tolist() == table.person.tolist()


def test_without_persons_nothing_is_described(tmp_path):
    out = tmp_path / "out"
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process", persons=False))
    df = timelines.read(out)
    assert (df.person == NO_PERSON).all() and (df.face_id >= 0).any()
    assert not list((out / "persons").glob("*.parquet"))
    with pytest.raises(FerError, match="no persons"):
        timelines.summary(out, by="person")


@pytest.mark.parametrize("apart", [[[], []], [[1], [0]], [None, None]])
def test_a_person_split_within_a_video_is_merged_across_videos_unless_seen_together(apart):
    from fer.people import MEMBERS_SCHEMA, _Identities

    rng = np.random.default_rng(2)
    u, e = _unit(rng.normal(size=128)), _unit(rng.normal(size=128))
    e = _unit(e - (e @ u) * u)
    a1, a2 = u + 0.3 * e, u - 0.3 * e  # 0.6 apart: video 1 kept them two persons
    ids = _Identities(pd.DataFrame(columns=MEMBERS_SCHEMA.names), 0)
    first = pd.DataFrame({"video_id": "v1", "person": [0, 1], "descriptor": [a1, a2], "apart": apart})
    assigned = ids.assign(np.stack([a1, a2]), 0.54)
    assert assigned == ["+p0", "+p1"]
    ids.replace("v1", first.assign(identity=["p0", "p1"], persons_ns=1, rows=1, first_s=0.0, last_s=1.0))
    # Video 2 shows a face between the two, a little nearer p0 (an exact tie would be broken by the
    # CPU's rounding): it joins p0, whose mean then lies within 0.54 of p1.
    between = u + 0.05 * e
    (joined,) = ids.assign(between[None], 0.54)
    assert joined == "p0"
    second = pd.DataFrame({"video_id": "v2", "person": [0], "descriptor": [between], "apart": [[]]})
    ids.replace("v2", second.assign(identity=["p0"], persons_ns=1, rows=1, first_s=0.0, last_s=1.0))
    merged = ids.merge(between[None], 0.54, 0.54)
    if apart[0] == []:  # never seen in one frame: one person after all, under the older id
        assert merged == 1 and set(ids.members.identity) == {"p0"}
    else:  # seen together (or not known): two people, however alike
        assert merged == 0 and set(ids.members.identity) == {"p0", "p1"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two videos with the same two people (two built clips, seeds 1 and 5), labelled; then one more."""
    tmp = tmp_path_factory.mktemp("archive")
    truth = {}
    for seed in (1, 5):
        scenes: list[str] = []
        truth[f"clip{seed}"] = (cuts.build(tmp / f"clip{seed}.mp4", shots=10, seed=seed, scenes=scenes), scenes)
    out = tmp / "out"
    run(LabelConfig(inputs=(str(tmp / "clip1.mp4"), str(tmp / "clip5.mp4")), out=str(out), engine="process"))
    return tmp, out, truth


def test_people_are_one_identity_across_videos_and_stay_so_as_videos_are_added(archive):
    tmp, out, truth = archive
    result = fer_cli("people", str(out), "--format", "csv")
    assert result.returncode == 0, result.stderr
    people = pd.read_csv(pd.io.common.StringIO(result.stdout))
    df = timelines.scan(out, where="identity IS NOT NULL", columns=["video_id", "frame", "person", "identity"])
    scene = [np.asarray(truth[v.split("-")[0]][1])[np.searchsorted(truth[v.split("-")[0]][0], f, side="right")]
             for v, f in zip(df.video_id, df.frame, strict=True)]  # fmt: skip
    df = df.assign(scene=scene)
    people_rows = df[df.scene.isin(["woman", "car"])]
    # The woman and the man in the car are each in both clips: one identity each, in both videos.
    assert people_rows.groupby("scene").identity.nunique().to_dict() == {"car": 1, "woman": 1}
    assert people_rows.groupby("identity").scene.nunique().max() == 1
    assert (people_rows.groupby("identity").video_id.nunique() == 2).all()
    assert set(people.identity) == set(df.identity)
    for identity in people_rows.identity.unique():
        assert (out / "people" / "pictures" / f"{identity}.jpg").is_file()
    before = dict(zip(df.drop_duplicates(["video_id", "person"]).set_index(["video_id", "person"]).index,
                      df.drop_duplicates(["video_id", "person"]).identity, strict=True))  # fmt: skip
    # A third video with the woman alone joins her identity; nobody else changes.
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process"))
    again = fer_cli("people", str(out))
    assert again.returncode == 0 and "0 left" in again.stderr, again.stderr
    df = timelines.scan(out, where="identity IS NOT NULL", columns=["video_id", "video_path", "person", "identity"])
    for (vid, person), identity in before.items():
        assert df[(df.video_id == vid) & (df.person == person)].identity.iloc[0] == identity
    woman = df[df.video_path.str.endswith("single_face.mp4")].identity.unique()
    assert len(woman) == 1 and woman[0] in before.values()


def test_enrolled_names_reach_queries(archive):
    tmp, out, _ = archive
    photo = tmp / "woman.png"
    import cv2

    cap = cv2.VideoCapture(str(SAMPLES / "face_noface.mov"))
    ok, frame = cap.read()
    assert ok and cv2.imwrite(str(photo), frame)
    result = fer_cli("people", str(out), "--enrol", "Woman", str(photo))
    assert result.returncode == 0, result.stderr
    assert "enrolled Woman: a face in 1 of 1" in result.stderr
    named = timelines.scan(out, where="name = 'Woman'", columns=["video_path", "identity", "name"])
    assert named.identity.nunique() == 1 and len(named) > 0
    assert fer_cli("people", str(out), "--enrol", "Nobody", str(SAMPLES / "no_face.mp4")).returncode != 0
    stray = fer_cli("people", str(out), str(photo))
    assert stray.returncode != 0 and "photos go with --enrol" in stray.stderr


@pytest.mark.parametrize("engine", ["auto", "ray"])
def test_photos_are_described_by_fer_people_not_when_labelled(tmp_path, engine):
    """A photo's faces are persons at once (one frame: each face its own); `fer people` reads the
    photos again to describe them (here, or on Ray's actors: the same descriptors), and they join
    the identity of the same woman in a video."""
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    cap = cv2.VideoCapture(str(SAMPLES / "single_face.mp4"))
    for i in range(3):
        cap.set(cv2.CAP_PROP_POS_FRAMES, 20 * i)
        ok, frame = cap.read()
        assert ok and cv2.imwrite(str(photos / f"woman{i}.jpg"), frame)
    out = tmp_path / "out"
    run(LabelConfig(inputs=(str(photos), str(SAMPLES / "single_face.mp4")), out=str(out), engine="process"))
    persons = pq.read_table(out / "persons").to_pandas()
    described = persons.descriptor.map(lambda d: bool(np.isfinite(d).all()))
    from_photo = persons.video_id.str.startswith("woman")
    assert from_photo.sum() == 3 and not described[from_photo].any() and described[~from_photo].all()
    assert (persons[from_photo].person == 0).all()
    (photos / "woman2.jpg").rename(tmp_path / "moved.jpg")  # not readable where it was labelled
    if engine == "ray":
        shutil.copytree(out, tmp_path / "here")
        assert fer_cli("people", str(tmp_path / "here"), "--engine", "process").returncode == 0
    result = fer_cli("people", str(out), "--engine", engine)
    assert result.returncode == 0, result.stderr
    where = "on Ray" if engine == "ray" else "here"  # auto: here, no cluster named
    assert f"described the faces of photos {where}: 2 persons; 1 left out" in result.stderr
    if engine == "ray":
        mine, theirs = (pq.read_table(o / "people" / "members.parquet").to_pandas().sort_values("video_id")
                        for o in (out, tmp_path / "here"))  # fmt: skip
        assert list(mine.video_id) == list(theirs.video_id) and list(mine.identity) == list(theirs.identity)
        np.testing.assert_allclose(np.stack(mine.descriptor), np.stack(theirs.descriptor), atol=1e-6)
    df = timelines.scan(out, columns=["video_path", "identity"])
    identities = df.groupby(df.video_path.map(lambda p: Path(p).name)).identity.first()
    assert identities.drop("woman2.jpg").nunique() == 1 and identities.notna().sum() == 3
    assert pd.isna(identities["woman2.jpg"])
    (tmp_path / "moved.jpg").rename(photos / "woman2.jpg")  # back: described now, the others not again
    again = fer_cli("people", str(out))
    assert "described the faces of photos here: 1 persons\n" in again.stderr, again.stderr
    df = timelines.scan(out, columns=["video_path", "identity"])
    assert df.identity.notna().all() and df.identity.nunique() == 1
    assert "described" not in fer_cli("people", str(out)).stderr


def test_query_without_people_says_how_to_make_them(tmp_path):
    out = tmp_path / "out"
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process"))
    with pytest.raises(FerError, match="fer people"):
        timelines.scan(out, where="identity = 'p0'")
    assert "identity" not in timelines.scan(out).columns  # the default columns name no identity yet


def test_plot_by_person(built, tmp_path):
    out, _ = built
    result = fer_cli("plot", str(out), "--by", "person", "--out", str(tmp_path / "p.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.png").stat().st_size > 0
    bad = fer_cli("plot", str(out), "--by", "shot", "--out", str(tmp_path / "q.png"))
    assert bad.returncode != 0 and "--by: choose face or person, not 'shot'" in bad.stderr


def test_a_relabelled_video_is_named_again_only_by_fer_people_and_keeps_its_identity(archive, tmp_path):

    tmp, source, _ = archive
    out = tmp_path / "out"
    shutil.copytree(source, out)
    assert fer_cli("people", str(out)).returncode == 0
    before = timelines.scan(out, where="identity IS NOT NULL", columns=["video_path", "identity"])
    clip = str(tmp / "clip1.mp4")
    run(LabelConfig(inputs=(clip,), out=str(out), engine="process", overwrite=True, fps=5.0))
    # Its persons were made anew: until fer people joins them, no row of it has an identity.
    stale = timelines.scan(out, where="identity IS NOT NULL", columns=["video_path", "identity"])
    assert not stale.video_path.str.endswith("clip1.mp4").any() and len(stale) > 0
    assert fer_cli("people", str(out)).returncode == 0
    after = timelines.scan(out, where="identity IS NOT NULL", columns=["video_path", "identity"])
    mine = lambda df: set(df[df.video_path.str.endswith("clip1.mp4")].identity)  # noqa: E731
    assert mine(after) and mine(after) <= mine(before)  # the same people keep their identities


def test_people_files_written_before_apart_still_join(archive, tmp_path):
    """Persons and members files without ``apart`` (written before it) read as apart from every
    other person of their video, beside new ones, and give the same identities."""
    import shutil

    from fer import people

    _, source, _ = archive
    out = tmp_path / "out"
    shutil.copytree(source, out)
    shutil.rmtree(out / "people", ignore_errors=True)
    fresh = people.update(out).table.drop(columns=["descriptor", "picture"])
    old = sorted((out / "persons").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(old).drop_columns(["apart"]), old)
    members = out / "people" / "members.parquet"
    table = pq.read_table(members)
    pq.write_table(table.drop_columns(["apart"]).replace_schema_metadata(table.schema.metadata), members)
    # The rewritten persons file is new to fer people: its video joins again, beside old members.
    again = people.update(out).table.drop(columns=["descriptor", "picture"])
    pd.testing.assert_frame_equal(again, fresh)


def test_people_of_an_output_without_persons_is_empty_not_a_crash(tmp_path):
    out = tmp_path / "out"
    run(LabelConfig(inputs=(str(SAMPLES / "single_face.mp4"),), out=str(out), engine="process", persons=False))
    result = fer_cli("people", str(out))
    assert result.returncode == 0, result.stderr
    assert "0 identities" in result.stderr
