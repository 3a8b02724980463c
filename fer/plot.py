"""Plots of emotion timelines (matplotlib, rendered off-screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.schema import NO_FACE, NO_PERSON

#: What a panel of :func:`plot_timeline` follows: a face (track) or a person (its tracks, across cuts).
PLOT_BY = ("face", "person")

#: One colour per emotion, in fer.labels.EMOTIONS order.
COLOURS = ("#d62728", "#8c564b", "#9467bd", "#ffbf00", "#1f77b4", "#ff7f0e", "#7f7f7f")


def plot_timeline(df: pd.DataFrame, out: str | Path, *, title: str = "", dpi: int = 100, by: str = "face") -> Path:
    """Stacked emotion probabilities over time, one panel per face (``by="person"``: per person,
    each panel naming the person and its faces), the dominant emotion marked as a coloured band
    above each panel. ``df`` holds one video's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if by not in PLOT_BY:
        raise FerError(f"--by: choose {' or '.join(PLOT_BY)}, not {by!r}")
    key = "face_id" if by == "face" else "person"
    faces = df[df.face_id != NO_FACE]
    if by == "person":
        faces = faces[faces.person.fillna(NO_PERSON) != NO_PERSON] if "person" in faces else faces.iloc[:0]
    if faces.empty:
        raise FerError(f"nothing to plot: no {by} in the selected rows")
    ids = sorted(faces[key].unique())
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 2.6 * len(ids) + 0.6), squeeze=False, sharex=True)
    t_min, t_max = df.time_s.min(), df.time_s.max()
    for ax, panel in zip(axes[:, 0], ids, strict=True):
        rows = faces[faces[key] == panel].sort_values("time_s")
        t = rows.time_s.to_numpy()
        ax.stackplot(t, rows[list(EMOTIONS)].to_numpy().T, colors=COLOURS, alpha=0.85, step="post")
        dominant = rows.emotion.map(EMOTIONS.index).to_numpy()
        ax.scatter(t, np.full(len(t), 1.04), c=[COLOURS[i] for i in dominant], marker="s", s=8, clip_on=False)
        ax.set_xlim(t_min, t_max)
        ax.set_ylim(0, 1)
        faces_of = ", ".join(map(str, sorted(rows.face_id.unique())))
        label = f"face {panel}" if by == "face" else f"person {panel}\n(faces {faces_of})"
        ax.set_ylabel(f"{label}\nprobability")
    axes[-1, 0].set_xlabel("time (s)")
    fig.legend(
        handles=[Patch(color=c, label=e) for e, c in zip(EMOTIONS, COLOURS, strict=True)],
        loc="upper center", ncol=len(EMOTIONS), frameon=False,
    )  # fmt: skip
    fig.suptitle(title, y=0.995, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
