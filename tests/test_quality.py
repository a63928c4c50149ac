"""The shipped checkpoints (trained by `make checkpoints` on digits) make images of the class asked for.

A classifier trained only on the digits TEST split (images no generative model saw) labels the
generated images; chance is 10 %. The figures are in the README (bench/bench_quality.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from gda_core.checkpoints import SHIPPED_DIR, load_run
from gda_core.data import images_to_tensor, load_dataset
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
@pytest.mark.slow
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


@pytest.mark.slow
def test_few_step_solver_matches_ddim_50_on_domain_features(tmp_path_factory):
    """DPM-Solver++(2M) at 15 steps keeps DDIM-50's quality on the shipped digits DDPM.

    Quality is measured as the README's sampler table does (bench/bench_quality.py): precision,
    recall and FID of the samples' domain-CNN features against the training split. Measured
    here (100 images, seed 0, CPU, dynamic x0 thresholding): DDIM-50 P 0.830 R 0.810 FID 3.14;
    DPM-Solver++-15 P 0.840 R 0.817 FID 3.12; DDIM-5 FID 4.99. The margins leave room for thread-count numerics but
    catch a broken solver (DDIM at 5 steps fails them).
    """
    from gda_core.metrics import fid, get_extractor, precision_recall

    path = SHIPPED_DIR / "ddpm-digits"
    if not (path / "model.safetensors").exists():
        pytest.skip(f"no shipped checkpoint at {path}; run `make checkpoints`")
    run = load_run(path, device="cpu")
    ds = load_dataset("digits")
    ext = get_extractor("domain-cnn", ds, device="cpu", cache_dir=tmp_path_factory.mktemp("ext"))
    real = ext(images_to_tensor(ds.train_images))
    labels = (np.arange(100) % 10).tolist()

    def quality(sampler: str, steps: int) -> tuple[float, float, float]:
        res = generate(run, len(labels), labels, seed=0, steps=steps, sampler=sampler)
        f = ext(images_to_tensor(res.images))
        p, r = precision_recall(real, f, 3)
        return p, r, fid(real, f)

    p50, r50, fid50 = quality("ddim", 50)
    p15, r15, fid15 = quality("dpmpp", 15)
    p5, r5, fid5 = quality("ddim", 5)
    print(f"ddim-50 P {p50:.3f} R {r50:.3f} FID {fid50:.2f} | dpmpp-15 P {p15:.3f} R {r15:.3f} FID {fid15:.2f} | ddim-5 FID {fid5:.2f}")
    assert r15 >= r50 - 0.06 and p15 >= p50 - 0.06
    assert fid15 <= 1.25 * fid50
    assert fid5 > 1.25 * fid50, "the check must be able to fail: a too-coarse sampler is visibly worse"
