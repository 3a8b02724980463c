"""The formats archives hold, built from one sample clip with PyAV (FFmpeg's libraries, no
``ffmpeg`` binary needed), each with what FFmpeg itself decodes of it: the format matrix
that ``tests/test_formats.py`` holds to and ``benchmarks/formats.py`` prints.

Each case is the clip re-encoded (or stream-copied) into one container and codec, the way
archives come: DVD rips, broadcast captures that start an hour in, DivX-era AVI with
B-frames, podcasts with a cover image, animated web images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    """One file of the matrix: its name, what it stands for, and how to write it from the
    clip's RGB frames. ``video`` is False for a file with no video stream (fer must say so)."""

    name: str
    what: str
    write: Callable[[list[np.ndarray], float, Path], None]
    video: bool = True
    notes: dict = field(default_factory=dict)


def _encode(
    frames: list[np.ndarray],
    fps: float,
    path: Path,
    codec: str,
    *,
    fmt: str | None = None,
    options: dict | None = None,
    pix_fmt: str = "yuv420p",
    offset_s: float = 0.0,
    times_s: list[float] | None = None,
    container_options: dict | None = None,
) -> None:
    """Encode RGB ``frames`` at ``fps`` (or at ``times_s``) into ``path``; presentation times
    start at ``offset_s``."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        stream.options = options or {}
        if times_s is not None:  # a fine clock for variable frame rate
            stream.codec_context.time_base = Fraction(1, 90000)

        def mux(packets) -> None:
            for packet in packets:
                if offset_s and packet.pts is not None:
                    shift = round(offset_s / packet.time_base)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                out.mux(packet)

        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(times_s[i] * 90000) if times_s is not None else i
            mux(stream.encode(frame))
        mux(stream.encode())


def _cover_with_audio(frames: list[np.ndarray], fps: float, path: Path) -> None:
    """An MP4 holding an hour of audio and one cover image (attached picture), as podcasts
    and music uploads come."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        audio = out.add_stream("aac", rate=8000, layout="mono")
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in cover.encode(av.VideoFrame.from_ndarray(frames[0], format="rgb24")):
            out.mux(packet)
        for packet in cover.encode():
            out.mux(packet)
        samples = 1024
        tone = (0.1 * np.sin(np.arange(samples) / 8.0)).astype(np.float32)[None, :]
        for k in range(60 * 8000 // samples):  # a minute of audio is enough to state a long file
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, k * samples
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def _animated_webp(frames: list[np.ndarray], fps: float, path: Path) -> None:
    _encode(frames, fps, path, "libwebp_anim", fmt="webp", pix_fmt="yuv420p", container_options={"loop": "0"})


def _gif(frames: list[np.ndarray], fps: float, path: Path) -> None:
    _encode(frames, fps, path, "gif", fmt="gif", pix_fmt="rgb8")


def _vfr_times(n: int, fps: float) -> list[float]:
    """Frame times that alternate between one and two frame periods (variable frame rate)."""
    return list(np.cumsum([0.0] + [(1 + (i % 2)) / fps for i in range(n - 1)]))


CASES: tuple[Case, ...] = (
    Case("avi_h264_bframes.avi", "H.264 with B-frames in AVI (old camcorder / DivX-era files)",
         lambda f, r, p: _encode(f, r, p, "libx264", options={"bf": "2"})),
    Case("dvd.vob", "MPEG-2 program stream (DVD rips)",
         lambda f, r, p: _encode(f, r, p, "mpeg2video", fmt="vob", options={"bf": "2"})),
    Case("broadcast.ts", "MPEG-TS, MPEG-2, starting at 3,600 s (broadcast captures)",
         lambda f, r, p: _encode(f, r, p, "mpeg2video", fmt="mpegts", offset_s=3600.0)),
    Case("broadcast_h264.ts", "MPEG-TS, H.264, starting at 3,600 s (OpenCV cannot seek in it)",
         lambda f, r, p: _encode(f, r, p, "libx264", fmt="mpegts", offset_s=3600.0)),
    Case("cut.mkv", "Matroska starting at 10 s (cut recordings)",
         lambda f, r, p: _encode(f, r, p, "libx264", fmt="matroska", offset_s=10.0)),
    Case("podcast.mp4", "MP4 holding audio and a cover image (podcasts, music uploads)", _cover_with_audio,
         video=False),
    Case("animated.gif", "animated GIF (web archives)", _gif),
    Case("animated.webp", "animated WebP (web archives)", _animated_webp),
    Case("divx.avi", "MPEG-4 part 2 in AVI", lambda f, r, p: _encode(f, r, p, "mpeg4", options={"bf": "1"})),
    Case("mjpeg.avi", "MJPEG in AVI", lambda f, r, p: _encode(f, r, p, "mjpeg", pix_fmt="yuvj420p")),
    Case("windows.wmv", "WMV 8 in ASF", lambda f, r, p: _encode(f, r, p, "wmv2", fmt="asf")),
    Case("flash.flv", "Sorenson H.263 in FLV", lambda f, r, p: _encode(f, r, p, "flv", fmt="flv")),
    Case("bluray.m2ts", "H.264 in M2TS", lambda f, r, p: _encode(f, r, p, "libx264", fmt="mpegts",
                                                               container_options={"mpegts_m2ts_mode": "1"})),
    Case("web.webm", "VP9 in WebM", lambda f, r, p: _encode(f, r, p, "libvpx-vp9", options={"deadline": "realtime",
                                                                                          "cpu-used": "8"})),
    Case("hevc.mp4", "HEVC in MP4", lambda f, r, p: _encode(f, r, p, "libx265",
                                                           options={"x265-params": "log-level=0"})),
    Case("long_gop.mp4", "H.264, one keyframe in 300 frames", lambda f, r, p: _encode(f, r, p, "libx264",
                                                                                    options={"g": "300"})),
    Case("fragmented.mp4", "fragmented MP4 (streaming recorders)",
         lambda f, r, p: _encode(f, r, p, "libx264",
                                 container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})),
    Case("vfr.mkv", "variable frame rate (phones, screen recordings)",
         lambda f, r, p: _encode(f, r, p, "libx264", fmt="matroska", times_s=_vfr_times(len(f), r))),
)  # fmt: skip


def clip_frames(path: Path, repeat: int = 1) -> tuple[list[np.ndarray], float]:
    """The RGB frames of a clip (``repeat`` times over, so that segments can be tested) and its rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate)
    return frames * repeat, fps


def ffmpeg_frames(path: Path) -> int:
    """The frames FFmpeg itself decodes of a file's video stream (cover images are no video: 0).
    FFmpeg's WebP decoder reads no animation, so an animated WebP counts the frames OpenCV's does."""
    import av

    if path.suffix == ".webp":
        import cv2

        return int(cv2.imcount(str(path)))
    with av.open(str(path)) as container:
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        return sum(1 for _ in container.decode(streams[0])) if streams else 0


def reference_frames(path: Path) -> list[tuple[np.ndarray, float]]:
    """Each frame FFmpeg decodes of a file (OpenCV for an animated WebP), in order, as BGR, with
    its presentation time (s from the stream's start; AVI states none: frame i at i / rate)."""
    import av
    import cv2

    if path.suffix == ".webp":
        _, animation = cv2.imreadanimation(str(path))
        starts = np.r_[0, np.cumsum(animation.durations)[:-1]] / 1000.0
        return [(cv2.cvtColor(f, cv2.COLOR_BGRA2BGR), float(t)) for f, t in zip(animation.frames, starts, strict=True)]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start, rate = float((stream.start_time or 0) * stream.time_base), float(stream.average_rate)
        frames = [(f.to_ndarray(format="bgr24"), f.time) for f in container.decode(stream)]
        avi = container.format.name == "avi"
    return [(bgr, i / rate if avi else t - start) for i, (bgr, t) in enumerate(frames)]


def build(folder: Path, clip: Path, repeat: int = 1, cases: tuple[Case, ...] = CASES) -> dict[str, int]:
    """Write every case into ``folder``; the frames FFmpeg decodes of each, by file name."""
    frames, fps = clip_frames(clip, repeat)
    folder.mkdir(parents=True, exist_ok=True)
    decoded = {}
    for case in cases:
        case.write(frames, fps, folder / case.name)
        decoded[case.name] = ffmpeg_frames(folder / case.name)
    return decoded
