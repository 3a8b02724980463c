"""Edited test footage with known cuts: shots of the sample clips joined with hard cuts.

Every shot is a run of consecutive frames of one sample clip (some mirrored, so a face can
sit where the last shot's face sat), scaled to one frame size; consecutive shots come from
different scenes, with a face on both sides of some cuts and on one
or neither side of others. Used by the shot tests and ``benchmarks/shots.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
#: The sample clips' shots as (scene, clip, first frame, end frame). face_noface.mov cuts at frame 73
#: from a woman talking (frame 72, between them, is black) to the empty room; single_face.mp4 is the
#: same footage as its first shot and no_face.mp4 the same room as its second (measured: 1-5 of
#: 255 apart), so a cut between two of one scene would be a continuity cut, not a shot change.
SHOTS = (
    ("woman", "single_face.mp4", 0, 72),
    ("woman", "face_noface.mov", 0, 72),
    ("room", "face_noface.mov", 73, 169),
    ("room", "no_face.mp4", 0, 95),
    ("car", "carphone_pristine.mp4", 0, 120),
    ("cartoon", "bigbuckbunny.mp4", 0, 132),
)


def _frames(name: str, size: tuple[int, int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLES / name))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))


#: A fade through black: the shot before fades out over ``FADE_OUT`` frames (to black), ``BLACK``
#: black frames, the next shot fades in from a quarter of its brightness (never black) over
#: ``FADE_IN`` frames, so the cut is the fade-in's first frame.
FADE_OUT, BLACK, FADE_IN = 8, 4, 8


def build(
    path: str | Path, shots: int = 8, seed: int = 0, size=(640, 360), fps: float = 25.0, fades: bool = False,
    scenes: list[str] | None = None,
) -> list[int]:  # fmt: skip
    """Write a clip of ``shots`` shots of 0.8-2.5 s each to ``path`` (MPEG-4 part 2); return the
    frame indices where a new shot starts (the cuts). With ``fades``, every other cut is a fade
    through black (:data:`FADE_OUT`) instead of a hard cut. ``scenes``, when given, receives
    each shot's scene (:data:`SHOTS`: one person each for "woman" and "car")."""
    rng = np.random.default_rng(seed)
    clips = {name: _frames(name, size) for name in {s[1] for s in SHOTS}}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    cuts, written, scene, pending = [], 0, None, []
    for i in range(shots):
        scene, name, first, end = SHOTS[int(rng.choice([k for k, s in enumerate(SHOTS) if s[0] != scene]))]
        if scenes is not None:
            scenes.append(scene)
        frames = clips[name][first:end]
        n = min(len(frames), int(rng.integers(round(0.8 * fps), round(2.5 * fps))))
        start = int(rng.integers(0, len(frames) - n + 1))
        mirror = bool(rng.integers(2))
        shot = [f[:, ::-1] if mirror else f for f in frames[start : start + n]]
        if fades and i % 2 == 0 and i:  # this shot fades in after the last one faded out
            black = [np.zeros_like(shot[0])] * BLACK
            pending = pending[:-FADE_OUT] + faded(pending[-FADE_OUT:], np.linspace(1, 0, FADE_OUT)) + black
            shot = faded(shot[:FADE_IN], np.linspace(0.25, 1, FADE_IN)) + shot[FADE_IN:]
        for frame in pending:
            writer.write(frame)
        written += len(pending)
        if i:
            cuts.append(written)
        pending = shot
    for frame in pending:
        writer.write(frame)
    writer.release()
    return cuts


def faded(frames: list[np.ndarray], alphas) -> list[np.ndarray]:
    """``frames`` scaled in brightness by ``alphas``, one each."""
    return [(f * a).round().astype(np.uint8) for f, a in zip(frames, alphas, strict=True)]
