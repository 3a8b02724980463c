"""Rewriting MP4 files for tests: the index (``moov``) moved before the media data, as
streaming tools write them, so that a file cut short still states its full frame count."""

from __future__ import annotations

import struct

#: Boxes that hold other boxes on the way from ``moov`` to the chunk-offset tables.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """``(type, offset, size, header)`` of the boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[i + 8 : i + 16])[0], 16
        elif size == 0:
            size = end - i
        yield kind, i, size, header
        i += size


def _shift_offsets(moov: bytearray, delta: int, start: int = 0, end: int | None = None) -> None:
    """Add ``delta`` to every chunk offset (``stco``/``co64``) inside ``moov``."""
    for kind, at, size, header in list(_boxes(bytes(moov), start, end)):
        body = at + header
        if kind in _CONTAINERS:
            _shift_offsets(moov, delta, body, at + size)
        elif kind in (b"stco", b"co64"):
            (count,) = struct.unpack(">I", moov[body + 4 : body + 8])
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            for k in range(count):
                pos = body + 8 + k * width
                (offset,) = struct.unpack(fmt, moov[pos : pos + width])
                moov[pos : pos + width] = struct.pack(fmt, offset + delta)


def faststart(data: bytes) -> bytes:
    """The same MP4 with ``moov`` right after ``ftyp`` (its chunk offsets moved to match)."""
    boxes = list(_boxes(data))
    (moov,) = [(at, size) for kind, at, size, _ in boxes if kind == b"moov"]
    ftyp_end = next(at + size for kind, at, size, _ in boxes if kind == b"ftyp")
    index = bytearray(data[moov[0] : moov[0] + moov[1]])
    _shift_offsets(index, len(index))
    rest = data[ftyp_end : moov[0]] + data[moov[0] + moov[1] :]
    return data[:ftyp_end] + bytes(index) + rest


def truncated(data: bytes, keep: float) -> bytes:
    """A faststart copy of the MP4 ``data`` cut after ``keep`` of its media data."""
    fast = faststart(data)
    (mdat_at, mdat_size) = next((at, size) for kind, at, size, _ in _boxes(fast) if kind == b"mdat")
    return fast[: mdat_at + int(mdat_size * keep)]


def distinct_copy(src, dst, tag: int) -> None:
    """Copy an MP4/MOV with a ``free`` box appended that holds ``tag``: the same frames, but
    another file to fer (whose video identity is the content)."""
    payload = f"fer test copy {tag}".encode()
    dst.write_bytes(src.read_bytes() + struct.pack(">I4s", 8 + len(payload), b"free") + payload)


def looped(src, dst, times: int) -> None:
    """Write ``src``'s frames ``times`` over into ``dst`` (MPEG-4 in MP4, re-encoded with
    OpenCV): a longer real video from a short one."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
