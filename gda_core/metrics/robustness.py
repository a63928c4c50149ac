"""Robustness: L2 DeepFool (Moosavi-Dezfooli et al. 2016), batched.

rho_adv = mean over images of ||r(x)||_2 / ||x||_2 (paper eq. 15); an image the classifier
already gets wrong counts with r = 0. Each iteration linearises the classifier around the current
adversarial point, moves to the nearest linearised decision boundary (eq. 8-9 for the multiclass
case), and stops an image as soon as its prediction changes. The total perturbation is scaled by
(1 + overshoot) and the adversarial image is kept in [0, 1].
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import Cancelled, ConfigError


@dataclass
class DeepFoolResult:
    rho: float  # mean ||r|| / ||x|| over all images (misclassified count 0)
    per_image: torch.Tensor  # (N,) float64 ||r|| / ||x||
    flipped: torch.Tensor  # (N,) bool: prediction changed (True for images already wrong)
    correct: torch.Tensor  # (N,) bool: classifier right on the clean image
    adversarial: torch.Tensor | None = None  # (N, C, H, W) when requested


def _deepfool_batch(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, steps: int, overshoot: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool on a batch whose clean predictions equal ``y``. Returns (x_adv, flipped)."""
    n = len(x0)
    r_tot = torch.zeros_like(x0)
    x_adv = x0.clone()
    active = torch.ones(n, dtype=torch.bool, device=x0.device)
    flipped = torch.zeros(n, dtype=torch.bool, device=x0.device)
    num_classes = None
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        xa = x_adv[idx].clone().requires_grad_(True)
        logits = model(xa)
        if num_classes is None:
            num_classes = logits.shape[1]
        ya = y[idx]
        pred = logits.argmax(1)
        done = pred != ya
        flipped[idx[done]] = True
        active[idx[done]] = False
        keep = ~done
        if not keep.any():
            break
        # Gradients of every logit w.r.t. its own image: the model is in eval mode, so a
        # sample's logits depend on that sample only and grad of the batch sum is per-sample.
        grads = []
        for k in range(num_classes):
            (g,) = torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k < num_classes - 1)
            grads.append(g)
        grads = torch.stack(grads, 1)[keep]  # (b, K, C, H, W)
        lg = logits.detach()[keep]
        yk = ya[keep]
        ar = torch.arange(len(yk), device=x0.device)
        f = lg - lg[ar, yk][:, None]  # (b, K)
        w = grads - grads[ar, yk][:, None]
        wn = w.flatten(2).norm(dim=2)  # (b, K)
        ratio = f.abs() / (wn + 1e-8)
        ratio[ar, yk] = float("inf")
        l_hat = ratio.argmin(1)
        w_l = w[ar, l_hat]
        step_size = (ratio[ar, l_hat] + 1e-4) / (wn[ar, l_hat] + 1e-8)
        r_i = step_size.view(-1, *([1] * (x0.ndim - 1))) * w_l
        sel = idx[keep]
        r_tot[sel] += r_i
        x_adv[sel] = (x0[sel] + (1 + overshoot) * r_tot[sel]).clamp(0, 1)
    else:
        # Final check for the images still active after the last step.
        idx = active.nonzero().squeeze(1)
        if len(idx):
            with torch.no_grad():
                pred = model(x_adv[idx]).argmax(1)
            flipped[idx[pred != y[idx]]] = True
    return x_adv.detach(), flipped


def deepfool(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 50,
    overshoot: float = 0.02,
    batch: int = 256,
    return_adversarial: bool = False,
    cancel: threading.Event | None = None,
) -> DeepFoolResult:
    """Batched L2 DeepFool against ``classifier`` on float (N, C, H, W) images in [0, 1]."""
    if images.ndim != 4:
        raise ConfigError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) != len(images):
        raise ConfigError(f"got {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ConfigError("DeepFool needs at least one image")
    if steps < 1 or overshoot < 0:
        raise ConfigError("DeepFool needs steps >= 1 and overshoot >= 0")
    dev = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    req = [p.requires_grad for p in classifier.parameters()]
    for p in classifier.parameters():
        p.requires_grad_(False)
    per, flips, corrects, advs = [], [], [], []
    try:
        for s in range(0, len(images), batch):
            if cancel is not None and cancel.is_set():
                raise Cancelled("DeepFool cancelled")
            x0 = images[s : s + batch].to(dev).float()
            y = labels[s : s + batch].to(dev)
            with torch.no_grad():
                correct = classifier(x0).argmax(1) == y
            x_adv = x0.clone()
            flipped = ~correct
            ci = correct.nonzero().squeeze(1)
            if len(ci):
                xa, fl = _deepfool_batch(classifier, x0[ci], y[ci], steps, overshoot)
                x_adv[ci] = xa
                flipped[ci] = fl
            r = (x_adv - x0).flatten(1).double().norm(dim=1)
            r[~correct] = 0.0
            per.append((r / x0.flatten(1).double().norm(dim=1).clamp_min(1e-12)).cpu())
            flips.append(flipped.cpu())
            corrects.append(correct.cpu())
            if return_adversarial:
                advs.append(x_adv.cpu())
    finally:
        for p, r_ in zip(classifier.parameters(), req, strict=True):
            p.requires_grad_(r_)
        classifier.train(was_training)
    per_image = torch.cat(per)
    return DeepFoolResult(
        rho=float(per_image.mean()),
        per_image=per_image,
        flipped=torch.cat(flips),
        correct=torch.cat(corrects),
        adversarial=torch.cat(advs) if return_adversarial else None,
    )


def deepfool_rho(
    classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, steps: int = 50, overshoot: float = 0.02, batch: int = 256
) -> tuple[float, torch.Tensor]:
    """(rho_adv, per-image ||r|| / ||x|| (N,)) of L2 DeepFool; misclassified images count 0."""
    res = deepfool(classifier, images, labels, steps=steps, overshoot=overshoot, batch=batch)
    return res.rho, res.per_image
