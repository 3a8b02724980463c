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

It is incremental: identities keep their ids, a video labelled since the last update joins
the nearest identity whose mean descriptor is within :data:`fer.video.persons.JOIN_BELOW`
(each person of a video a different identity, nearest pairs first), or starts a new one; a
video relabelled or no longer counted leaves its identities. Descriptors stay in ``OUT``.
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
        ("key", pa.string()),  # the video's manifest key when it joined: relabelled videos join again
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


def update(out: str | Location, *, join_below: float | None = None) -> PeopleReport:
    """Bring ``OUT/people/`` up to date with the output's persons (see the module)."""
    from fer.video.persons import JOIN_BELOW

    out = out if isinstance(out, Location) else Location.parse(out)
    join_below = JOIN_BELOW if join_below is None else join_below
    entries = {v: e for v, e in manifest.load(out).items() if e.status in manifest.LABELLED}
    if not entries:
        raise FerError(f"{out}: no labelled videos (fer label writes them)")
    members = _read(_folder(out) / "members.parquet", MEMBERS_SCHEMA)
    stale = ~members.video_id.map(lambda v: v in entries and entries[v].key).eq(members.key)
    report = PeopleReport(left=int(stale.sum()))
    members = members[~stale]
    new_videos = sorted(set(entries) - set(members.video_id))
    persons = _persons_of(out, new_videos)
    ids = _Identities(members)
    for vid, group in persons.groupby("video_id", sort=True) if len(persons) else ():
        assigned = ids.assign(np.stack(group.descriptor.to_numpy()), join_below)
        report.new += sum(a.startswith("+") for a in assigned)
        report.joined += sum(not a.startswith("+") for a in assigned)
        rows = group.assign(identity=[a.lstrip("+") for a in assigned], key=entries[vid].key)
        ids.add(rows)
    members = ids.members
    folder = _folder(out)
    folder.makedirs()
    (folder / "members.parquet").write_parquet(pa.Table.from_pandas(members[MEMBERS_SCHEMA.names],
                                               schema=MEMBERS_SCHEMA, preserve_index=False))  # fmt: skip
    enrolled = _read(folder / "enrolled.parquet", ENROLLED_SCHEMA)
    table = _people_table(members, enrolled, join_below)
    table["picture"] = [_picture(out, entries, members, i) for i in table.identity]
    (folder / "people.parquet").write_parquet(pa.Table.from_pandas(table, schema=PEOPLE_SCHEMA, preserve_index=False))
    report.identities, report.named, report.table = len(table), int(table.name.notna().sum()), table
    return report


class _Identities:
    """Identities as members and running descriptor sums; ``assign`` matches one video's persons."""

    def __init__(self, members: pd.DataFrame):
        self.members = members.reset_index(drop=True)
        self.names: list[str] = []
        self.sums = np.zeros((0, DIMS))
        self.counts = np.zeros(0)
        for identity, group in self.members.groupby("identity", sort=False):
            self._grow(identity, np.stack(group.descriptor.to_numpy()).sum(axis=0), len(group))
        numbers = [int(n[1:]) for n in self.names if n[1:].isdigit()]
        self.next = max(numbers, default=-1) + 1

    def _grow(self, identity: str, total: np.ndarray, count: int) -> None:
        self.names.append(identity)
        self.sums = np.vstack([self.sums, total])
        self.counts = np.append(self.counts, count)

    def assign(self, vectors: np.ndarray, join_below: float) -> list[str]:
        """An identity per vector (``+p7`` for a new one); nearest pairs first, one vector an identity."""
        out: list[str | None] = [None] * len(vectors)
        if self.names:
            dist = np.linalg.norm(vectors[:, None] - (self.sums / self.counts[:, None])[None], axis=-1)
            taken: set[int] = set()
            for flat in np.argsort(dist, axis=None):
                i, j = np.unravel_index(flat, dist.shape)
                if dist[i, j] >= join_below:
                    break
                if out[i] is None and j not in taken:
                    out[i], _ = self.names[j], taken.add(j)
        for i, name in enumerate(out):
            if name is None:
                out[i] = f"+p{self.next}"
                self._grow(f"p{self.next}", np.zeros(DIMS), 0)
                self.next += 1
        return out  # type: ignore[return-value]

    def add(self, rows: pd.DataFrame) -> None:
        for identity, vector in zip(rows.identity, rows.descriptor, strict=True):
            j = self.names.index(identity)
            self.sums[j] += vector
            self.counts[j] += 1
        self.members = pd.concat([self.members, rows[MEMBERS_SCHEMA.names]], ignore_index=True)


def _people_table(members: pd.DataFrame, enrolled: pd.DataFrame, join_below: float) -> pd.DataFrame:
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
    persons = _persons_of(out, [members[members.identity == identity].video_id.iloc[0]])
    row = persons[persons.person == members[members.identity == identity].person.iloc[0]].iloc[0]
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
