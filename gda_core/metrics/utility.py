"""Utility: train on synthetic, test on real (TSTR), against train on real (TRTR) and real +
synthetic augmentation at 1x, 2x, 3x the real training size. Every classifier is the same fixed
SmallCNN with the same optimiser, budget rule and seed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from ..errors import ConfigError
from .classifier import (
    DEFAULT_BUDGET,
    ClassifierBudget,
    SmallCNN,
    accuracy,
    train_classifier,
)


def utility(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    *,
    seed: int = 0,
    budget: ClassifierBudget = DEFAULT_BUDGET,
    device: torch.device | str = "cpu",
    multiples: tuple[int, ...] = (1, 2, 3),
    progress: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, float], dict[str, SmallCNN]]:
    """Train and test the fixed classifier on each training set.

    Args:
        train, test: real (images (N, C, H, W) in [0, 1] or uint8 NCHW, labels (N,)).
        synthetic: generated (images, labels); its first N_train images (same class balance as the
            real training split) form the TSTR set, its first k * N_train the k-x augmentation set.

    Returns:
        raw figures {tstr_acc, tstr_bacc, trtr_acc, trtr_bacc, aug_{k}x_acc, aug_{k}x_bacc} and the
        trained {'tstr', 'trtr'} classifiers (eval mode) for the robustness axis.
    """
    tx, ty = train
    sx, sy = synthetic
    n = len(ty)
    if len(sy) < n:
        raise ConfigError(f"utility needs at least as many synthetic images as real training images ({n}), got {len(sy)}")
    jobs: list[tuple[str, torch.Tensor, torch.Tensor]] = [("trtr", tx, ty), ("tstr", sx[:n], sy[:n])]
    for k in multiples:
        if len(sy) < k * n:
            raise ConfigError(f"{k}x augmentation needs {k * n} synthetic images, got {len(sy)}")
        ax = torch.cat([_float(tx), _float(sx[: k * n])])
        ay = torch.cat([ty.cpu(), sy[: k * n].cpu()])
        jobs.append((f"aug_{k}x", ax, ay))
    raw: dict[str, float] = {}
    models: dict[str, SmallCNN] = {}
    for j, (name, x, y) in enumerate(jobs):

        def cb(step: int, total: int, j=j) -> None:
            if progress is not None:
                progress(f"utility: training classifier {j + 1}/{len(jobs)}", (j + step / total) / len(jobs))

        model = train_classifier(_float(x), y, num_classes, seed=seed, budget=budget, device=device, progress=cb, cancel=cancel)
        acc, bacc = accuracy(model, test[0], test[1])
        raw[f"{name}_acc"], raw[f"{name}_bacc"] = acc, bacc
        if name in ("tstr", "trtr"):
            models[name] = model
    return raw, models


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
