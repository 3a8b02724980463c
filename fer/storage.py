"""Where outputs live: a local path or a URI of a pyarrow filesystem.

``fer label --out`` and the timeline readers accept either a path (local disk or a shared
mount such as NFS) or a URI pyarrow understands: ``s3://bucket/prefix`` (options such as
``?region=...&endpoint_override=host:port&scheme=http`` go in the query; credentials and
``AWS_ENDPOINT_URL`` come from the usual AWS environment), ``gs://``, ``abfs://``,
``hdfs://``. A :class:`Location` is an immutable value naming one file or folder there.

Every write is atomic: a reader sees the whole new content or nothing (local files go
through a temporary name and a rename; object-store uploads only become visible when
they complete). Object stores cannot append, so nothing in fer appends.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from fer.errors import EnvironmentFault, FerError

# Filesystems whose uploads are atomic and whose folders are only key prefixes.
_OBJECT_STORES = ("s3", "gcs", "abfs")


@dataclass(frozen=True)
class Location:
    """One file or folder: ``path`` inside ``fs``; ``uri`` is how messages name it."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @classmethod
    def parse(cls, where: str | Path) -> Location:
        """A location from a local path (relative or absolute) or a filesystem URI.

        Raises:
            FerError: the URI's scheme is unknown or its filesystem cannot be set up.
        """
        text = str(where)
        if "://" not in text:
            path = os.path.abspath(os.path.expanduser(text))
            return cls(pafs.LocalFileSystem(), path, text)
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise FerError(f"cannot use {text}: {exc}") from None
        return cls(fs, path.rstrip("/"), text.split("?", 1)[0].rstrip("/"))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    @property
    def parent(self) -> Location:
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.uri.rstrip("/").rsplit("/", 1)[0])

    def __truediv__(self, part: str) -> Location:
        return Location(self.fs, f"{self.path}/{part}", f"{self.uri}/{part}")

    def __str__(self) -> str:
        return self.uri

    def _type(self) -> pafs.FileType:
        try:
            return self.fs.get_file_info(self.path).type
        except OSError as exc:
            raise FerError(f"cannot reach {self.uri}: {exc}") from None

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def makedirs(self) -> None:
        """Create this folder and its parents (a no-op for object-store prefixes)."""
        if self.fs.type_name in _OBJECT_STORES:
            return  # prefixes need no creating; creating a bucket is the user's business
        try:
            self.fs.create_dir(self.path, recursive=True)
        except OSError as exc:
            raise EnvironmentFault(f"cannot create {self.uri}: {_reason(exc)}") from None

    def check_writable(self) -> None:
        """Fail now, not after hours of work, when this folder cannot be written.

        Raises:
            EnvironmentFault: naming the location and the filesystem's reason.
        """
        probe = self / f".fer-write-check-{os.getpid()}"
        try:
            probe._write_atomically(b"")
            self.fs.delete_file(probe.path)
        except OSError as exc:
            raise EnvironmentFault(f"cannot write to {self.uri}: {_reason(exc)}") from None

    def files(self, suffix: str = "") -> list[Location]:
        """The files directly in this folder ending in ``suffix``, hidden ones left out, sorted."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise FerError(f"cannot list {self.uri}: {exc}") from None
        names = sorted(
            i.base_name for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(suffix) and not i.base_name.startswith(".")
        )  # fmt: skip
        return [self / n for n in names]

    def modified(self, suffix: str = "") -> dict[str, int]:
        """Name -> modification time (ns, the storage's clock) of the files :meth:`files` lists:
        one listing, no file opened."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise FerError(f"cannot list {self.uri}: {exc}") from None
        names = (i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith("."))
        return {i.base_name: int(i.mtime_ns or 0) for i in names if i.base_name.endswith(suffix)}

    def mtime_ns(self) -> int:
        """This file's modification time (ns, the storage's clock); OSError when it is not there."""
        info = self.fs.get_file_info(self.path)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(self.uri)
        return int(info.mtime_ns or 0)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def write_bytes(self, data: bytes) -> None:
        """Replace this file's content atomically (the parent folder must exist locally).

        Raises:
            EnvironmentFault: the filesystem refused (disk full, no permission, ...): one line
                naming this file and the reason; no partial file is left under any name.
        """
        try:
            self._write_atomically(data)
        except OSError as exc:
            raise EnvironmentFault(f"cannot write {self.uri}: {_reason(exc)}") from None

    def _write_atomically(self, data: bytes) -> None:
        if self.is_local:
            # fsync before the rename: after a crash the file holds the old or new bytes.
            tmp = f"{os.path.dirname(self.path)}/.{self.name}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        elif self.fs.type_name in _OBJECT_STORES:
            # One upload of the whole content: the object appears only when it completes.
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
        else:
            tmp = f"{self.path.rsplit('/', 1)[0]}/.{self.name}.{os.getpid()}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path)

    def delete(self) -> None:
        """Remove this file if it is there (best effort: a cleanup must not hide the error
        that asked for it)."""
        with contextlib.suppress(OSError):
            self.fs.delete_file(self.path)

    def write_parquet(self, table) -> None:
        """Write a ``pyarrow.Table`` as this Parquet file (zstd; uncompressed up to
        :data:`UNCOMPRESSED_ROWS` rows), atomically as :meth:`write_bytes` does. Serialised in
        memory first: fer's files are a few MB per hour of video."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd" if table.num_rows > UNCOMPRESSED_ROWS else "none")
        self.write_bytes(buf.getvalue().to_pybytes())


#: Tables of up to this many rows are written uncompressed: a photo's timeline (one row) takes half
#: the time to write so, and compressing a few hundred bytes saves nothing.
UNCOMPRESSED_ROWS = 16


def _reason(exc: OSError) -> str:
    """The filesystem's reason in words ("No space left on device"), without Python's noise."""
    return exc.strerror or str(exc)


def read_many(locations: list[Location], threads: int = 16) -> list[bytes | None]:
    """The bytes of many small files, read concurrently (object stores answer each request
    with tens of milliseconds of latency: 16 requests in flight hide it without tripping
    request-rate limits); None for a file that vanished meanwhile."""

    def one(loc: Location) -> bytes | None:
        try:
            return loc.read_bytes()
        except FileNotFoundError:
            return None

    if len(locations) < 2:
        return [one(loc) for loc in locations]
    with ThreadPoolExecutor(min(threads, len(locations))) as pool:
        return list(pool.map(one, locations))
