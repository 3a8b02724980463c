"""The model shipped with the package: found by default, and clearly better than chance."""

from __future__ import annotations

import numpy as np
import pytest

from fer import bundle
from fer.labels import EMOTIONS
from fer.metrics import score
from tests.conftest import FER2013


def test_default_model_is_found_and_described():
    loaded = bundle.load()
    assert loaded.path == bundle.DEFAULT_BUNDLE
    meta = loaded.meta
    training = meta["training"]
    assert training["command"].startswith("fer train ") and training["config"]["arch"] == meta["architecture"]
    assert training["epochs"] >= training["best_epoch"] > 0 and training["wall_seconds"] > 0
    assert len(training["data"]["train"]["fingerprint"]) == 64 and training["data"]["train"]["counts"][1] == 436
    assert set(meta["validation"]["per_class"]) == set(EMOTIONS)
    assert meta["validation"]["accuracy"] >= 0.66 and "val" in meta["validation"]["split"]
    size = sum(f.stat().st_size for f in bundle.DEFAULT_BUNDLE.iterdir())
    assert size <= 20 * 2**20


@pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 is not present")
def test_default_model_beats_chance_on_val_faces(ray_local):
    from fer.data import fer2013

    images, labels = fer2013.read_split(FER2013, "val", limit_per_class=30).to_numpy()
    lite = bundle.load()
    assert lite.runtime == "litert"
    probs = lite.predict(images)
    scores = score(labels, probs)
    assert scores.accuracy > 0.4  # chance is 1/7
    assert np.count_nonzero(scores.recall) == len(EMOTIONS)
    # The int8 LiteRT network against the float one: the same class for nearly every face.
    exact = bundle.load(runtime="keras").predict(images)
    assert np.mean(exact.argmax(1) == probs.argmax(1)) >= 0.98
    assert np.abs(exact - probs).max() < 0.1
