"""The downstream classifier is a choice (the small CNN, or torchvision's ResNet-18, DenseNet-121 and
VGG-11 trained from scratch on 16-64 px images): each builds and trains at every image size, training
is deterministic and leaves the global RNG alone, and the choice reaches the report, the cache key,
the comparability warnings, the study's cell key and the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gda_core.errors import ConfigError
from gda_core.metrics import ARCHITECTURES, ClassifierBudget, comparability, evaluate
from gda_core.metrics.classifier import build_classifier, predict, train_classifier, with_classifier

STEPS = ClassifierBudget(min_steps=3, max_steps=3, batch_size=16)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("size,channels", [(16, 1), (32, 3), (64, 1)])
def test_each_architecture_builds_for_small_images_and_outputs_logits(arch, size, channels):
    m = build_classifier(channels, 4, size, seed=0, architecture=arch).eval()
    with torch.no_grad():
        out = m(torch.rand(2, channels, size, size))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    x = np.random.default_rng(0).integers(0, 255, (24, 16, 16, 1), dtype=np.uint8)
    y = np.arange(24) % 3
    state = torch.get_rng_state()
    b = dataclasses.replace(STEPS, architecture="resnet18")
    a1, a2 = train_classifier(x, y, 3, seed=4, budget=b), train_classifier(x, y, 3, seed=4, budget=b)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a1.state_dict().values(), a2.state_dict().values(), strict=True))
    assert predict(a1, x).shape == (24,)


def test_unknown_classifier_is_one_line():
    with pytest.raises(ConfigError, match="unknown classifier 'vgg99'"):
        ClassifierBudget(architecture="vgg99")
    with pytest.raises(ConfigError, match="unknown classifier"):
        with_classifier(STEPS, "resnet1000")
    assert with_classifier(STEPS, None) is STEPS


@pytest.mark.slow
def test_the_choice_reaches_the_report_the_cache_key_and_the_comparability_warning(tmp_path):
    from gda_core.checkpoints import SHIPPED_DIR

    ship = SHIPPED_DIR / "vae-digits"
    if not (ship / "model.safetensors").exists():
        pytest.skip("checkpoints/vae-digits is not shipped")
    ext = {"budget": ClassifierBudget(epochs=1, min_steps=20, max_steps=20)}
    kw = dict(augment=(1,), cache_dir=tmp_path / "c", device="cpu", deepfool_steps=3, kid_subsets=2, extractor_options=ext, n_samples=40, seeds=1)
    small = evaluate(ship, budget=STEPS, **kw)
    vgg = evaluate(ship, budget=with_classifier(STEPS, "vgg11"), **kw)
    assert small.provenance["classifier_budget"]["architecture"] == "small-cnn"
    assert vgg.provenance["classifier_budget"]["architecture"] == "vgg11"
    assert small.provenance["settings_sha256"] != vgg.provenance["settings_sha256"]
    assert any("different downstream classifiers" in w for w in comparability([small, vgg], ["a", "b"]))
    # The domain features (FID, precision, recall) do not depend on the downstream choice.
    assert small.raw["precision"] == vgg.raw["precision"]


def test_study_cell_key_and_cli_carry_the_classifier(capsys):
    from gda_core.augment.cli import register as _  # noqa: F401  (the study's parser has --classifier)
    from gda_core.cli import main

    with pytest.raises(SystemExit) as exc:  # argparse's usage error: one line, exit 2
        main(["evaluate", "--checkpoint", "x", "--classifier", "vgg99", "--out", "r.json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'vgg99'" in err and "\n" not in err
    from gda_core.stages import stage_key

    keys = {stage_key(budget=dataclasses.replace(STEPS, architecture=a).to_dict()) for a in ARCHITECTURES}
    assert len(keys) == len(ARCHITECTURES)
