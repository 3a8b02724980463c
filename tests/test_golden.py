"""The shipped model through the whole video pipeline gives the emotions recorded for a sample clip.

Every other labelling test uses an untrained model, so a regression in decoding, cropping,
alignment or colour handling would pass them; this one compares `fer label`'s default path
with what it gave when the shipped model was last changed. Tolerance: the same emotion on at
least 95% of the face rows, and every probability within 0.1 (int8 kernels differ a little
between CPUs). Re-record after changing the shipped model: ``python -m tests.test_golden``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fer import bundle
from fer.labels import EMOTIONS
from fer.video.pipeline import LabelConfig, run
from tests.conftest import SAMPLES

CLIP = SAMPLES / "single_face.mp4"
GOLDEN = Path(__file__).parent / "golden" / "single_face.json"


def label_rows(out: Path) -> pd.DataFrame:
    """The face rows `fer label CLIP` writes with every default, in frame order."""
    df = pd.read_parquet(run(LabelConfig(inputs=(str(CLIP),), out=str(out)), progress=None).entries[0].output)
    return df[df.face_id >= 0].sort_values(["frame", "x"]).reset_index(drop=True)


def shipped_id() -> str:
    return bundle.read_meta(bundle.resolve(None))["id"]


def test_the_shipped_model_labels_the_sample_clip_as_recorded(ray_local, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    assert golden["model"] == shipped_id(), "the shipped model changed: re-record (see the module's docstring)"
    rows = label_rows(tmp_path)
    assert rows.frame.tolist() == golden["frames"]
    same = np.mean(rows.emotion.to_numpy() == np.array(golden["emotions"]))
    assert same >= 0.95, f"the same emotion on only {same:.0%} of the face rows"
    assert np.abs(rows[list(EMOTIONS)].to_numpy() - np.array(golden["probs"])).max() <= 0.1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        rows = label_rows(Path(tmp))
    probs = rows[list(EMOTIONS)].round(4).to_numpy().tolist()
    record = {"model": shipped_id(), "frames": rows.frame.tolist(), "emotions": rows.emotion.tolist(), "probs": probs}
    GOLDEN.write_text(json.dumps(record) + "\n")
    print(f"{GOLDEN}: {len(rows)} face rows of model {record['model']}")
