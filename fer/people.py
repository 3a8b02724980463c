"""People: the persons of every video of a labelling output joined into archive-wide identities.

``fer label`` leaves each video's persons in ``OUT/persons/`` (:data:`fer.schema.PERSONS_SCHEMA`:
a mean descriptor each). :func:`update` joins them into identities ``p0, p1, ...`` and writes
``OUT/people/``:

- ``members.parquet`` (:data:`MEMBERS_SCHEMA`): which identity each ``(video_id, person)`` is;
  queries join it (``fer query OUT --where "identity = 'p3'"``);
- ``people.parquet`` (:data:`PEOPLE_SCHEMA`): per identity its name (when enrolled), videos,
  persons, rows, the mean descriptor and the path of a picture of its best view;
- ``enrolled.parquet``: names and the mean descriptor of their photos (:func:`enrol`);
- ``pictures/<identity>.jpg``: a 150x150 chip of each identity's best view.

It is incremental: identities keep their ids (never reused), a video labelled since the last
update joins the nearest identity whose mean descriptor is within :data:`ARCHIVE_JOIN_BELOW`
(each person of a video a different identity, nearest pairs first), or starts a new one; a video
labelled again is matched with its old identities still in place, then replaces its members; a
video no longer counted leaves. Then two identities that one new person is within
:data:`ARCHIVE_JOIN_BELOW` of are merged while the mean distance between their members stays
below :data:`MERGE_BELOW`, unless a member of one was seen in a frame with a member of the other:
a person split in two within one video (two persons there) becomes one identity once another
video shows a face like both. The older id stays. Descriptors stay in ``OUT``.

A photo's persons are not described when it is labelled (:data:`fer.video.persons.PENDING`):
:func:`update` reads the photo again and describes them, and their descriptors are kept in
``OUT/people/`` only; a photo that cannot be read here (moved, or on an object store) is
left out until it can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fer._ray import ENGINES, cluster_address
from fer.errors import FerError
from fer.schema import PERSONS_DIR
from fer.storage import Location, read_many
from fer.validation import Options, check
from fer.video import manifest
from fer.video.descriptor import DIMS

PEOPLE_DIR = "people"
MEMBERS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("person", pa.int32()),
        ("identity", pa.string()),
        # The video's persons file's modification time when it joined: a video labelled again
        # (new persons file) joins again, and queries ignore its members until then.
        ("persons_ns", pa.int64()),
        ("rows", pa.int64()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("descriptor", pa.list_(pa.float32())),
        # The video's persons seen in one frame with this one (null: not known, all of them).
        ("apart", pa.list_(pa.int32())),
    ]
)
PEOPLE_SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("name", pa.string()),
        ("videos", pa.int64()),
        ("persons", pa.int64()),
        ("rows", pa.int64()),
        ("picture", pa.string()),
        ("descriptor", pa.list_(pa.float32())),
    ]
)
ENROLLED_SCHEMA = pa.schema([("name", pa.string()), ("photos", pa.int64()), ("descriptor", pa.list_(pa.float32()))])


@dataclass
class PeopleReport:
    """What :func:`update` did."""

    identities: int = 0
    joined: int = 0  # persons of new videos that joined an identity
    new: int = 0  # identities started (some may have been merged into older ones in the same update)
    left: int = 0  # persons of relabelled or dropped videos taken out
    merged: int = 0  # identities joined into an older one (a person split within a video, rejoined)
    named: int = 0
    described: int = 0  # persons of photos described now (see the module)
    unread: int = 0  # persons of photos that could not be read here, left out
    on_ray: bool = False  # whether the photos were described on Ray
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def _folder(out: Location) -> Location:
    return out / PEOPLE_DIR


def _read(where: Location, schema: pa.Schema) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if not where.is_file():
        return schema.empty_table().to_pandas()
    return pq.read_table(where.path, filesystem=where.fs).to_pandas()


def _persons_of(out: Location, videos: list[str]) -> pd.DataFrame:
    """The persons files of ``videos`` (those that have one), read in parallel."""
    import io

    import pyarrow.parquet as pq

    files = [out / PERSONS_DIR / f"{v}.parquet" for v in videos]
    tables = [pq.read_table(io.BytesIO(b)) for b in read_many(files) if b is not None]
    # Files written before ``apart`` lack it: null, read as apart from every person of the video.
    return pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame()


def _persons_files(out: Location) -> dict[str, int]:
    """Video id -> its persons file's modification time (ns): one listing."""
    return {name.removesuffix(".parquet"): t for name, t in (out / PERSONS_DIR).modified(".parquet").items()}


#: A new person joins the nearest identity whose mean descriptor is nearer than this (and names are
#: given within it): a person's mean over its face ids varies less than one face id's, so a little
#: looser than :data:`~fer.video.persons.JOIN_BELOW`. Chosen with :data:`MERGE_BELOW` on pairs of
#: clips of 6 LFW people (``benchmarks/identity.py``; people in both clips with one identity, purity):
#: ``--across-seed 8`` (6 pairs): join 0.54 or 0.58: 38 of 40, 100%; with merging at 0.50: 40 of 40,
#: 100%; at 0.54: 40, 96.25%. ``--across-seed 9 --across 12``: join 0.54: 77 of 83, 98.86%; 0.58: 78,
#: 98.86%; with merging at 0.50: 78 and 79, 97.42%.
ARCHIVE_JOIN_BELOW = 0.58
#: Two identities a new person is near to are merged while the mean distance between their
#: members is below this: tighter than joining, since a wrong merge mixes two people for good.
MERGE_BELOW = 0.50


def update(out: str | Location, *, join_below: float | None = None, merge_below: float | None = None,
           engine: str = "auto", address: str | None = None) -> PeopleReport:  # fmt: skip
    """Bring ``OUT/people/`` up to date with the output's persons (see the module); photos are
    described on Ray or here as ``engine`` says (``auto``: on Ray when a cluster is named, by
    ``address`` or ``RAY_ADDRESS``, for its nodes to read the photos; else here, where starting Ray
    would cost more than it saves on one machine)."""
    check("engine", engine, Options(ENGINES))
    out = out if isinstance(out, Location) else Location.parse(out)
    join_below = ARCHIVE_JOIN_BELOW if join_below is None else join_below
    merge_below = MERGE_BELOW if merge_below is None else merge_below
    entries = {v: e for v, e in manifest.load(out).items() if e.status in manifest.LABELLED}
    if not entries:
        raise FerError(f"{out}: no labelled videos (fer label writes them)")
    stamps = _persons_files(out)
    folder = _folder(out)
    members = _with_apart(_read(folder / "members.parquet", MEMBERS_SCHEMA))
    gone = ~members.video_id.isin([v for v in entries if v in stamps])
    report = PeopleReport(left=int(gone.sum()))
    members = members[~gone]
    joined = members.groupby("video_id").persons_ns.first() if len(members) else pd.Series(dtype=np.int64)
    todo = sorted(v for v in entries if v in stamps and joined.get(v) != stamps[v])
    ids = _Identities(members, _next_id(folder))
    persons = _described(_persons_of(out, todo), entries, report, engine, address)
    added = _join(ids, persons, {v: stamps[v] for v in todo}, join_below, report)
    report.merged = ids.merge(added, join_below, merge_below)
    folder.makedirs()
    schema = MEMBERS_SCHEMA.with_metadata({b"next_id": str(ids.next).encode()})
    (folder / "members.parquet").write_parquet(
        pa.Table.from_pandas(ids.members[MEMBERS_SCHEMA.names], schema=schema, preserve_index=False)
    )
    enrolled = _read(folder / "enrolled.parquet", ENROLLED_SCHEMA)
    table = _people_table(ids.members, enrolled, join_below)
    table["picture"] = [_picture(out, entries, ids.members, i) for i in table.identity]
    for name in set((folder / "pictures").modified(".jpg")) - {f"{i}.jpg" for i in table.identity}:
        (folder / "pictures" / name).delete()  # an identity gone: its face goes too
    (folder / "people.parquet").write_parquet(pa.Table.from_pandas(table, schema=PEOPLE_SCHEMA, preserve_index=False))
    report.identities, report.named, report.table = len(table), int(table.name.notna().sum()), table
    return report


def _join(ids: _Identities, persons: pd.DataFrame, stamps: dict[str, int], join_below: float,
          report: PeopleReport) -> np.ndarray:  # fmt: skip
    """Each video of ``stamps`` (id -> its persons file's time) replaces its members with its
    ``persons``, each joined to an identity or a new one (counted in ``report``); returns the
    descriptors of the persons added."""
    groups = dict(tuple(persons.groupby("video_id"))) if len(persons) else {}
    added: list[np.ndarray] = []
    for vid, stamp in stamps.items():  # a video relabelled without persons (none described) leaves its old members
        group = _with_apart(groups.get(vid, pd.DataFrame(columns=MEMBERS_SCHEMA.names)))
        assigned = ids.assign(np.stack(group.descriptor.to_numpy()), join_below) if len(group) else []
        report.new += sum(a.startswith("+") for a in assigned)
        report.joined += sum(not a.startswith("+") for a in assigned)
        added += list(group.descriptor)
        ids.replace(vid, group.assign(identity=[a.lstrip("+") for a in assigned], persons_ns=stamp))
    return np.array(added, np.float64).reshape(-1, DIMS)


#: Photos' faces described per call of the descriptor (memory stays bounded on 10^5 photos).
DESCRIBE_BATCH = 256


class DescribePhotos:
    """Describe the pending persons of photos (see the module): Ray Data's callable-class stage,
    called directly when not on Ray. ``__init__`` loads the descriptor once; ``__call__`` maps a
    batch of ``at``, ``path``, ``content`` (fingerprint) and ``landmarks`` ``(n, 5, 2)`` to ``at``,
    ``descriptor`` ``(n, DIMS)`` and ``ok`` (False where the photo cannot be read here: its
    descriptor is NaN)."""

    def __init__(self, threads: int = 0):
        from fer.video.descriptor import Describer

        self.describe = Describer(threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fer.video.descriptor import chip

        chips = []
        ok = np.zeros(len(batch["at"]), bool)
        last, photo = None, None  # one photo in memory at a time (a photo's persons are neighbours)
        for i, (path, content, marks) in enumerate(
            zip(batch["path"], batch["content"], batch["landmarks"], strict=True)
        ):
            if path != last:
                last, photo = path, _photo(str(path), str(content))
            if photo is not None:
                ok[i] = True
                chips.append(chip(photo, np.asarray(marks, np.float32)))
        vectors = np.full((len(ok), DIMS), np.nan, np.float32)
        if chips:
            vectors[ok] = self.describe(np.stack(chips), mirror=True)
        return {"at": batch["at"], "descriptor": vectors, "ok": ok}


def _described(persons: pd.DataFrame, entries: dict, report: PeopleReport, engine: str,
               address: str | None) -> pd.DataFrame:  # fmt: skip
    """``persons`` with the descriptors of the photos' pending persons (NaN) computed from the
    photos, read again (:class:`DescribePhotos`, on Ray or here: see :func:`update`), and
    counted in ``report``; those whose photo cannot be read are dropped."""
    persons = persons.reset_index(drop=True)
    pending = [i for i, d in enumerate(persons.get("descriptor", [])) if not np.isfinite(d).all()]
    if not pending:
        return persons
    rows = persons.iloc[pending]
    tasks = {
        "at": np.array(pending, np.int64),
        # Absolute here: Ray's actors read them from working directories of their own.
        "path": np.array([os.path.abspath(entries[v].path) for v in rows.video_id], object),
        "content": np.array([entries[v].content for v in rows.video_id], object),
        "landmarks": np.stack([np.asarray(m, np.float32).reshape(5, 2) for m in rows.best_landmarks]),
    }
    report.on_ray = engine == "ray" or (engine == "auto" and cluster_address(address) is not None)
    done = _describe_on_ray(tasks, address) if report.on_ray else _describe_here(tasks)
    vectors, keep = list(persons.descriptor), np.ones(len(persons), bool)
    for at, vector, ok in zip(done["at"], done["descriptor"], done["ok"], strict=True):
        vectors[at], keep[at] = vector, ok
    report.unread = int((~keep).sum())
    report.described = len(pending) - report.unread
    return persons.assign(descriptor=vectors)[keep]


def _describe_here(tasks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:class:`DescribePhotos` in this process, :data:`DESCRIBE_BATCH` persons a call."""
    describe = DescribePhotos()
    parts = [describe({k: v[i : i + DESCRIBE_BATCH] for k, v in tasks.items()})
             for i in range(0, len(tasks["at"]), DESCRIBE_BATCH)]  # fmt: skip
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _describe_on_ray(tasks: dict[str, np.ndarray], address: str | None) -> dict[str, np.ndarray]:
    """:class:`DescribePhotos` on the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else a local
    Ray): an actor per CPU at most, the photos read where the actors run."""
    import ray

    from fer._ray import connect

    owned = connect(address)
    try:
        ds = ray.data.from_items([{k: v[i] for k, v in tasks.items()} for i in range(len(tasks["at"]))])
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ds.map_batches(DescribePhotos, batch_size=DESCRIBE_BATCH, batch_format="numpy", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
                            fn_constructor_kwargs={"threads": 1})  # fmt: skip
        parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    finally:
        if owned:
            ray.shutdown()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _photo(path: str, content: str) -> np.ndarray | None:
    """The photo at ``path`` as it was labelled (``content``: its fingerprint then), None when it
    cannot be read here (moved, on an object store, or changed since: its landmarks would no
    longer fit)."""
    from fer.video.decode import read_image
    from fer.video.inputs import content_id

    if not Path(path).is_file() or content_id(path) != content:
        return None
    try:
        return read_image(path)
    except Exception:  # noqa: BLE001 - whatever OpenCV raises on a file it cannot decode: left out
        return None


def _frame(entry, index: int) -> np.ndarray | None:
    """Frame ``index`` of a manifest ``entry``'s video, or its photo as labelled (:func:`_photo`);
    None when it cannot be read here."""
    import cv2

    from fer.video.decode import is_still

    if not Path(entry.path).is_file():
        return None
    if is_still(entry.path):
        return _photo(entry.path, entry.content)
    cap = cv2.VideoCapture(entry.path)
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    return frame if ok else None


def _with_apart(persons: pd.DataFrame) -> pd.DataFrame:
    """Persons or members written before ``apart`` with it: None, apart from every other person of the video."""
    return persons if "apart" in persons else persons.assign(apart=None)


def _next_id(folder: Location) -> int:
    """The next identity number: past every id ever given (kept in ``members.parquet``'s metadata)."""
    import pyarrow.parquet as pq

    where = folder / "members.parquet"
    if not where.is_file():
        return 0
    meta = pq.read_schema(where.path, filesystem=where.fs).metadata or {}
    return int(meta.get(b"next_id", b"0"))


def membership(out: Location) -> pa.Table | None:
    """``(video_id, person, identity, name)`` for the videos whose persons joined at the last
    :func:`update` and were not labelled again since (their members would name other persons);
    None before ``fer people`` ran."""
    import pyarrow.parquet as pq

    members, people = _folder(out) / "members.parquet", _folder(out) / "people.parquet"
    if not (members.is_file() and people.is_file()):
        return None
    stamps = _persons_files(out)
    m = pq.read_table(members.path, filesystem=members.fs, columns=["video_id", "person", "identity", "persons_ns"])
    pairs = zip(m.column("video_id").to_pylist(), m.column("persons_ns").to_pylist(), strict=True)
    current = pa.array([stamps.get(v) == t for v, t in pairs])
    m = m.filter(current).drop_columns(["persons_ns"])
    names = pq.read_table(people.path, filesystem=people.fs, columns=["identity", "name"])
    return m.join(names, "identity", join_type="left outer")


class _Identities:
    """Identities: their members and running descriptor sums; ``assign`` matches one video's
    persons, ``replace`` puts them in (a video labelled again leaves its old members then)."""

    def __init__(self, members: pd.DataFrame, next_id: int):
        self.members = members.reset_index(drop=True)
        self.index: dict[str, int] = {}
        self.sums = np.zeros((max(16, 2 * len(members)), DIMS))
        self.counts = np.zeros(len(self.sums))
        for identity, group in self.members.groupby("identity", sort=False):
            self._slot(identity)
            self.sums[self.index[identity]] = np.stack(group.descriptor.to_numpy()).sum(axis=0)
            self.counts[self.index[identity]] = len(group)
        numbers = [int(n[1:]) for n in self.index if n[1:].isdigit()]
        self.next = max(next_id, max(numbers, default=-1) + 1)

    def _slot(self, identity: str) -> int:
        if identity not in self.index:
            if len(self.index) == len(self.sums):  # grow geometrically: amortised O(1) a new identity
                self.sums = np.vstack([self.sums, np.zeros_like(self.sums)])
                self.counts = np.append(self.counts, np.zeros_like(self.counts))
            self.index[identity] = len(self.index)
        return self.index[identity]

    def assign(self, vectors: np.ndarray, join_below: float) -> list[str]:
        """An identity per vector (``+p7`` for a new one); nearest pairs first, one vector an identity."""
        out: list[str | None] = [None] * len(vectors)
        live = np.flatnonzero(self.counts[: len(self.index)] > 0)
        if len(live):
            names = list(self.index)
            dist = _distances(vectors, self.sums[live] / self.counts[live, None])
            taken: set[int] = set()
            for flat in np.argsort(dist, axis=None):
                i, j = np.unravel_index(flat, dist.shape)
                if dist[i, j] >= join_below:
                    break
                if out[i] is None and j not in taken:
                    out[i] = names[live[j]]
                    taken.add(j)
        for i, name in enumerate(out):
            if name is None:
                out[i] = f"+p{self.next}"
                self.next += 1
        return out  # type: ignore[return-value]

    def merge(self, vectors: np.ndarray, join_below: float, merge_below: float) -> int:
        """Merge identities that one of the persons ``vectors`` just added is near to: two
        identities within ``join_below`` of one person, nearest first, merge while the mean
        distance between their members' descriptors (average linkage, as persons within a video
        are joined) stays below ``merge_below``, never two with members seen in one frame. The
        smaller id stays. Returns the merges done."""
        pairs = self._bridged(vectors, join_below)
        if not pairs:
            return 0
        groups = self._groups({j for _, a, b in pairs for j in (a, b)})
        root = {j: j for j in groups}
        number = {j: int(name[1:]) if name[1:].isdigit() else -1 for name, j in self.index.items()}
        for _, a, b in pairs:
            a, b = _root(root, a), _root(root, b)
            if a == b or groups[a].apart_from(groups[b]) or groups[a].distance(groups[b]) >= merge_below:
                continue
            keep, gone = sorted((a, b), key=number.__getitem__)  # the older id stays
            groups[keep].absorb(groups.pop(gone))
            self.sums[keep] += self.sums[gone]
            self.counts[keep] += self.counts[gone]
            self.sums[gone], self.counts[gone] = 0, 0
            root[gone] = keep
        names = list(self.index)
        rename = {names[j]: names[_root(root, j)] for j in root if _root(root, j) != j}
        self.members["identity"] = self.members.identity.replace(rename)
        return len(rename)

    def _bridged(self, vectors: np.ndarray, join_below: float) -> list[tuple[float, int, int]]:
        """Pairs (their distances to the person, slot, slot) of identities that one of ``vectors``
        is within ``join_below`` of, nearest first: the evidence that they are one person."""
        live = np.flatnonzero(self.counts[: len(self.index)] > 0)
        if not len(vectors) or len(live) < 2:
            return []
        centroids = self.sums[live] / self.counts[live, None]
        pairs: dict[tuple[int, int], float] = {}  # each pair once, by its nearest bridge
        for start in range(0, len(vectors), 1024):  # distances in blocks: memory O(1024 x identities)
            dist = _distances(vectors[start : start + 1024], centroids)
            for row in dist:
                for a, b in combinations(np.flatnonzero(row < join_below), 2):
                    key = (int(live[a]), int(live[b]))
                    pairs[key] = min(pairs.get(key, np.inf), float(row[a] + row[b]))
        return sorted((d, a, b) for (a, b), d in pairs.items())

    def _groups(self, slots: set[int]) -> dict[int, _Group]:
        """The members of identity ``slots`` as groups to merge."""
        names = list(self.index)
        wanted = {names[j]: j for j in slots}
        rows = self.members[self.members.identity.isin(list(wanted))]
        persons = self.members.groupby("video_id").person.agg(list).to_dict()
        groups = {j: _Group() for j in slots}
        for identity, vid, person, apart, vector in zip(rows.identity, rows.video_id, rows.person, rows.apart,
                                                         rows.descriptor, strict=True):  # fmt: skip
            others = persons[vid] if apart is None else apart  # not known: apart from every other person there
            groups[wanted[identity]].add((vid, int(person)), {(vid, int(q)) for q in others if q != person}, vector)
        return groups

    def replace(self, video_id: str, rows: pd.DataFrame) -> None:
        """Make ``rows`` the members of ``video_id`` (its old members, if any, leave)."""
        old = self.members.video_id == video_id
        for identity, vector in zip(self.members.identity[old], self.members.descriptor[old], strict=True):
            self.sums[self.index[identity]] -= vector
            self.counts[self.index[identity]] -= 1
        for identity, vector in zip(rows.identity, rows.descriptor, strict=True):
            j = self._slot(identity)
            self.sums[j] += vector
            self.counts[j] += 1
        self.members = pd.concat([self.members[~old], rows[MEMBERS_SCHEMA.names]], ignore_index=True)


@dataclass
class _Group:
    """An identity being merged: its members ``(video_id, person)``, those it may not join
    (seen in one frame with one of its own) and its members' descriptors."""

    members: set = field(default_factory=set)
    forbidden: set = field(default_factory=set)
    vectors: list = field(default_factory=list)

    def add(self, member: tuple, forbidden: set, vector: np.ndarray) -> None:
        """A member, those it may not join, its descriptor."""
        self.members.add(member)
        self.forbidden |= forbidden
        self.vectors.append(np.asarray(vector, np.float64))

    def absorb(self, other: _Group) -> None:
        """``other``'s members become this group's."""
        self.members |= other.members
        self.forbidden |= other.forbidden
        self.vectors += other.vectors

    def apart_from(self, other: _Group) -> bool:
        """Whether a member of one was seen in a frame with a member of the other."""
        return bool(self.members & other.forbidden or other.members & self.forbidden)

    def distance(self, other: _Group) -> float:
        """Average linkage: the mean distance between a member of each (in blocks: memory stays
        O(1024 x members) for identities of any size)."""
        mine, theirs = np.stack(self.vectors), np.stack(other.vectors)
        total = sum(_distances(mine[i : i + 1024], theirs).sum() for i in range(0, len(mine), 1024))
        return float(total / (len(mine) * len(theirs)))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` Euclidean distances: |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one matrix product."""
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def _root(root: dict[int, int], j: int) -> int:
    """``j``'s group after the merges recorded in ``root`` (slot -> the slot it joined)."""
    while root[j] != j:
        j = root[j]
    return j


def _people_table(members: pd.DataFrame, enrolled: pd.DataFrame, join_below: float) -> pd.DataFrame:
    """One row per identity with members (:data:`PEOPLE_SCHEMA`; pictures filled in by the caller);
    each named after the nearest enrolled name within ``join_below``."""
    if members.empty:
        return PEOPLE_SCHEMA.empty_table().to_pandas()
    g = members.groupby("identity", sort=False)
    table = pd.DataFrame({"videos": g.video_id.nunique(), "persons": g.size(), "rows": g.rows.sum()})
    table["descriptor"] = [np.stack(d.to_numpy()).mean(axis=0).astype(np.float32) for _, d in g.descriptor]
    table = table.reset_index()
    table = table.iloc[np.argsort([int(i[1:]) for i in table.identity])].reset_index(drop=True)
    table["name"] = None
    if len(enrolled) and len(table):
        names = np.stack(enrolled.descriptor.to_numpy())
        dist = np.linalg.norm(np.stack(table.descriptor.to_numpy())[:, None] - names[None], axis=-1)
        nearest = dist.argmin(axis=1)
        close = dist[np.arange(len(table)), nearest] < join_below
        table["name"] = [str(enrolled.name.iloc[n]) if c else None for n, c in zip(nearest, close, strict=True)]
    table["picture"] = None
    return table[PEOPLE_SCHEMA.names]


def _picture(out: Location, entries: dict, members: pd.DataFrame, identity: str) -> str | None:
    """The path of ``OUT/people/pictures/<identity>.jpg``, cut from its first member's best view
    when missing; None when the video cannot be opened here (an object store, a moved file)."""
    import cv2

    from fer.video.descriptor import chip

    where = _folder(out) / "pictures" / f"{identity}.jpg"
    if where.is_file():
        return str(where)
    first = members[members.identity == identity].iloc[0]
    persons = _persons_of(out, [first.video_id])
    if persons.empty:  # its persons file was deleted meanwhile
        return None
    row = persons[persons.person == first.person].iloc[0]
    if (frame := _frame(entries[row.video_id], int(row.best_frame))) is None:
        return None
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(chip(frame, np.asarray(row.best_landmarks)), cv2.COLOR_RGB2BGR))
    where.parent.makedirs()
    where.write_bytes(jpg.tobytes())
    return str(where)


def enrol(out: str | Location, name: str, photos: list[str]) -> int:
    """Add (or replace) ``name`` with the mean descriptor of the largest face of each photo;
    returns the photos a face was found in. Identities are named at the next :func:`update`."""
    import cv2

    from fer.video.descriptor import Describer, chip
    from fer.video.faces import create_detector

    out = out if isinstance(out, Location) else Location.parse(out)
    detect, chips = create_detector("yunet"), []
    for photo in photos:
        frame = cv2.imread(photo)
        if frame is None:
            raise FerError(f"--enrol {name}: cannot read {photo} as an image")
        faces = [d for d in detect(frame) if np.isfinite(d.landmarks).all()]
        if faces:
            chips.append(chip(frame, max(faces, key=lambda d: d.size).landmarks))
    if not chips:
        raise FerError(f"--enrol {name}: no face found in {', '.join(photos)}")
    vector = Describer()(np.stack(chips), mirror=True).mean(axis=0)
    folder = _folder(out)
    folder.makedirs()
    enrolled = _read(folder / "enrolled.parquet", ENROLLED_SCHEMA)
    enrolled = pd.concat([enrolled[enrolled.name != name],
                          pd.DataFrame({"name": [name], "photos": [len(chips)], "descriptor": [vector]})])  # fmt: skip
    table = pa.Table.from_pandas(enrolled, schema=ENROLLED_SCHEMA, preserve_index=False)
    (folder / "enrolled.parquet").write_parquet(table)
    return len(chips)
