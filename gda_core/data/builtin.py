"""Built-in datasets that work offline because a dependency ships them."""

from __future__ import annotations

import numpy as np

from .base import Dataset, DataSpec, finalize, stratified_split
from .registry import register_dataset

DIGITS_DEFAULT_SIZE = 16


@register_dataset(
    "digits",
    description="scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), served at 16x16; offline",
    plain_name="handwritten digits",
)
def load_digits(spec: DataSpec) -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16 ink intensities; scale to 0..255 grey.
    images = (bunch.images.astype(np.float32) * (255.0 / 16.0)).round().clip(0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    # A fixed split (seed 0) so that every run on digits shares one test set, whatever spec.seed says.
    tr, va, te = stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    return finalize(
        name="digits",
        class_names=[str(i) for i in range(10)],
        splits={"train": (images[tr], labels[tr]), "val": (images[va], labels[va]), "test": (images[te], labels[te])},
        spec=spec,
        description="Handwritten digits 0-9 (scikit-learn, UCI ML), upsampled from 8x8.",
        default_size=DIGITS_DEFAULT_SIZE,
    )
