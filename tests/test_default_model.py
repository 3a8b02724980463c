"""The model shipped with the package: found by default, and clearly better than chance."""

from __future__ import annotations

import numpy as np
import pytest

from fer import bundle
from fer.labels import EMOTIONS
from fer.metrics import score
from tests.conftest import FER2013


def _networks(path, meta: dict) -> list[dict]:
    """The ``model.json`` of every single network in the bundle at ``path`` (itself, or its members)."""
    return [bundle.read_meta(path / m["path"]) for m in meta["members"]] if "members" in meta else [meta]


def test_default_model_is_found_and_described():
    loaded = bundle.load()
    assert loaded.path == bundle.DEFAULT_BUNDLE
    meta = loaded.meta
    networks = _networks(loaded.path, meta)
    for network in networks:  # how each network was made, from the data up
        training = network["training"]
        assert training["command"].startswith("fer train ") and training["config"]["arch"] == network["architecture"]
        assert training["epochs"] >= training["best_epoch"] > 0 and training["wall_seconds"] > 0
        counts = training["data"]["train"]["counts"]
        assert len(training["data"]["train"]["fingerprint"]) == 64 and counts[1] == 230  # disgust by FER+'s votes
    if "members" in meta:
        assert meta["command"].startswith("fer bundle --ensemble ") and len(networks) >= 2
    assert set(meta["validation"]["per_class"]) == set(EMOTIONS)
    assert meta["validation"]["accuracy"] >= 0.66 and "val" in meta["validation"]["split"]
    # Each network ships twice (float for GPUs and --runtime keras, int8 for CPUs): ~8 MB for `deep`,
    # ~34 MB for `vggnet`'s 6.8M parameters.
    size = sum(f.stat().st_size for f in bundle.DEFAULT_BUNDLE.rglob("*") if f.is_file())
    assert size <= 64 * 2**20


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
