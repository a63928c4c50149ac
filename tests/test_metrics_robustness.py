"""DeepFool against torchattacks, and the fixed classifier's determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gda_core.metrics import ClassifierBudget, accuracy, deepfool, deepfool_rho, features, train_classifier


@pytest.fixture(scope="module")
def mlp(digits):
    """A small MLP on digits, trained full-batch in a second (DeepFool only needs a differentiable classifier)."""
    x, y = digits.tensors("train")
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return _fit(net, x, y)


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def linear(digits):
    """A linear classifier: DeepFool's linearisation is exact, so one step reaches the boundary."""
    x, y = digits.tensors("train")
    torch.manual_seed(0)
    return _fit(nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10)), x, y)


@pytest.mark.parametrize("which", ["mlp", "linear"])
def test_deepfool_agrees_with_torchattacks_per_image(digits, which, request):
    """Image by image: the same target class as torchattacks' DeepFool and the same perturbation
    size to 0.5 % (ours adds 1e-4 to each step so that the image really crosses the boundary;
    torchattacks stops on it, so some of its images keep their class)."""
    torchattacks = pytest.importorskip("torchattacks")
    net = request.getfixturevalue(which)
    x, y = digits.tensors("test")
    with torch.no_grad():
        ok = (net(x).argmax(1) == y).nonzero().squeeze(1)[:40]
    x, y = x[ok], y[ok]
    res = deepfool(net, x, y, steps=50, overshoot=0.02, return_adversarial=True)
    adv, target = torchattacks.DeepFool(net, steps=50, overshoot=0.02).forward_return_target_labels(x, y)
    ref = ((adv - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).double()
    ratio = res.per_image / ref
    assert ((ratio > 0.995) & (ratio < 1.005)).all(), ratio
    with torch.no_grad():
        ours = net(res.adversarial).argmax(1)
    assert res.flipped.all() and (ours != y).all()  # every perturbation really flips the prediction ...
    assert (ours == target).all()  # ... to the class torchattacks aims at


def test_deepfool_misclassified_count_zero(digits, mlp):
    x, y = digits.tensors("test")
    x, y = x[:20], y[:20].clone()
    with torch.no_grad():
        pred = mlp(x).argmax(1)
    y[:5] = (pred[:5] + 1) % 10  # force wrong labels on the first five
    rho, per = deepfool_rho(mlp, x, y, steps=50, batch=7)
    assert (per[:5] == 0).all()
    correct = pred[5:] == y[5:]
    assert (per[5:][correct] > 0).all()
    assert rho == pytest.approx(float(per.mean()))


def test_fixed_classifier_is_deterministic_and_learns(digits):
    x, y = digits.tensors("train")
    xt, yt = digits.tensors("test")
    budget = ClassifierBudget(epochs=2, min_steps=40, max_steps=40)
    torch.manual_seed(123)  # the global RNG must not matter
    a = train_classifier(x, y, 10, seed=3, budget=budget)
    torch.manual_seed(999)
    b = train_classifier(x, y, 10, seed=3, budget=budget)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    acc, bacc = accuracy(a, xt, yt)
    assert acc > 0.5 and bacc > 0.5  # chance is 0.1
    f = features(a, xt)
    assert f.shape == (len(xt), a.feature_dim) and torch.isfinite(f).all()
    # uint8 NHWC input gives the same features as float NCHW.
    f8 = features(a, digits.test_images)
    assert torch.allclose(f, f8, atol=1e-5)
    c = train_classifier(x, y, 10, seed=4, budget=budget)
    assert not torch.equal(next(iter(c.state_dict().values())), next(iter(a.state_dict().values())))
    np.testing.assert_array_equal(accuracy(a, xt, yt), (acc, bacc))
