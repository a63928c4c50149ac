"""The shipped checkpoints (trained by `make checkpoints` on digits) make images of the class asked for.

A classifier trained only on the digits TEST split (images no generative model saw) labels the
generated images; chance is 10 %. The figures are in the README (bench/bench_quality.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from gda_core.checkpoints import SHIPPED_DIR, load_run
from gda_core.data import load_dataset
from gda_core.sampling import generate

THRESHOLD = {"vae": 0.6, "gan": 0.6, "ddpm": 0.6}


@pytest.fixture(scope="module")
def held_out_classifier():
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("digits")
    x = ds.test_images.reshape(len(ds.test_images), -1) / 255.0
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(x, ds.test_labels)
    # Sanity: it generalises to the (also unseen) validation split.
    assert clf.score(ds.val_images.reshape(len(ds.val_images), -1) / 255.0, ds.val_labels) > 0.85
    return clf


@pytest.mark.parametrize("family", ["vae", "gan", "ddpm"])
def test_shipped_checkpoint_makes_the_requested_class(family, held_out_classifier):
    path = SHIPPED_DIR / f"{family}-digits"
    if not (path / "model.safetensors").exists():
        pytest.skip(f"no shipped checkpoint at {path}; run `make checkpoints`")
    run = load_run(path, device="cpu")
    labels = np.repeat(np.arange(10), 10)
    res = generate(run, len(labels), labels.tolist(), seed=0)
    pred = held_out_classifier.predict(res.images.reshape(len(labels), -1) / 255.0)
    acc = float((pred == labels).mean())
    assert acc >= THRESHOLD[family], f"{family}: only {acc:.2f} of samples recognised as the requested class"
