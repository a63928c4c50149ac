"""The real-vs-synthetic map with UMAP (the Latent space page's default), not only PCA: the map
keeps classes apart, is the same for the same seed, and flags which points are synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from gda_core import latent
from gda_core.data import load_dataset
from gda_core.errors import ConfigError


@pytest.mark.slow  # umap-learn's numba compilation takes tens of seconds on first use
def test_umap_map_separates_classes_is_seeded_and_flags_synthetic_points():
    from sklearn.neighbors import KNeighborsClassifier

    ds = load_dataset("digits")
    idx = np.concatenate([np.flatnonzero(ds.train_labels == c)[:50] for c in (0, 1, 6)])
    real, labels = ds.train_images[idx], ds.train_labels[idx]
    # "Synthetic" images: held-out test digits of the same classes stand in for a perfect generator.
    t = np.concatenate([np.flatnonzero(ds.test_labels == c)[:10] for c in (0, 1, 6)])
    m = latent.embed_map(real, labels, ds.test_images[t], ds.test_labels[t], method="umap", seed=3)
    again = latent.embed_map(real, labels, ds.test_images[t], ds.test_labels[t], method="umap", seed=3)
    assert m.method == "umap" and m.coords.shape == (180, 2) and np.isfinite(m.coords).all()
    assert np.array_equal(m.coords, again.coords), "the same seed gives the same map"
    assert m.synthetic.sum() == 30 and not m.synthetic[:150].any()
    # Neighbourhoods survive the projection: classes fitted on the real points predict the held-out ones.
    knn = KNeighborsClassifier(5).fit(m.coords[:150], m.labels[:150])
    assert knn.score(m.coords[150:], m.labels[150:]) > 0.85
    with pytest.raises(ConfigError, match="unknown map method"):
        latent.embed_map(real, labels, real[:3], labels[:3], method="tsne")
