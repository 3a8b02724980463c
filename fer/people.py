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
update joins the nearest identity whose mean descriptor is within
:data:`fer.video.persons.JOIN_BELOW` (each person of a video a different identity, nearest
pairs first), or starts a new one; a video labelled again is matched with its old identities
still in place, then replaces its members; a video no longer counted leaves. Descriptors stay
in ``OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fer.errors import FerError
from fer.schema import PERSONS_DIR
from fer.storage import Location, read_many
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
    new: int = 0  # identities started
    left: int = 0  # persons of relabelled or dropped videos taken out
    named: int = 0
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
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()


def _persons_files(out: Location) -> dict[str, int]:
    """Video id -> its persons file's modification time (ns): one listing."""
    return {name.removesuffix(".parquet"): t for name, t in (out / PERSONS_DIR).modified(".parquet").items()}


def update(out: str | Location, *, join_below: float | None = None) -> PeopleReport:
    """Bring ``OUT/people/`` up to date with the output's persons (see the module)."""
    from fer.video.persons import JOIN_BELOW

    out = out if isinstance(out, Location) else Location.parse(out)
    join_below = JOIN_BELOW if join_below is None else join_below
    entries = {v: e for v, e in manifest.load(out).items() if e.status in manifest.LABELLED}
    if not entries:
        raise FerError(f"{out}: no labelled videos (fer label writes them)")
    stamps = _persons_files(out)
    folder = _folder(out)
    members = _read(folder / "members.parquet", MEMBERS_SCHEMA)
    gone = ~members.video_id.isin([v for v in entries if v in stamps])
    report = PeopleReport(left=int(gone.sum()))
    members = members[~gone]
    joined = members.groupby("video_id").persons_ns.first() if len(members) else pd.Series(dtype=np.int64)
    todo = sorted(v for v in entries if v in stamps and joined.get(v) != stamps[v])
    ids = _Identities(members, _next_id(folder))
    persons = _persons_of(out, todo)
    groups = dict(tuple(persons.groupby("video_id"))) if len(persons) else {}
    for vid in todo:  # a video relabelled without persons (none described) leaves its old members
        group = groups.get(vid, pd.DataFrame(columns=MEMBERS_SCHEMA.names))
        assigned = ids.assign(np.stack(group.descriptor.to_numpy()), join_below) if len(group) else []
        report.new += sum(a.startswith("+") for a in assigned)
        report.joined += sum(not a.startswith("+") for a in assigned)
        ids.replace(vid, group.assign(identity=[a.lstrip("+") for a in assigned], persons_ns=stamps[vid]))
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
            centroids = self.sums[live] / self.counts[live, None]
            # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix product over every identity.
            sq = (vectors**2).sum(1)[:, None] + (centroids**2).sum(1)[None] - 2 * vectors @ centroids.T
            dist = np.sqrt(np.maximum(sq, 0))
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
    path = entries[row.video_id].path
    if not Path(path).is_file():
        return None
    cap = cv2.VideoCapture(path)
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(row.best_frame))
    ok, frame = cap.read()
    cap.release()
    if not ok:
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
