"""The downstream classifier behind the domain features, TSTR / TRTR utility and DeepFool.

One architecture (the small CNN unless the user picks another of ARCHITECTURES), one optimiser,
one budget rule and one seed for every model, so that utility and robustness figures differ only
because the training images differ. The domain features (FID, precision, recall) always use the small CNN. Training is deterministic for
a seed on a given device: weight init, shuffling and dropout draw from local generators only (the
global torch RNG is never touched, so concurrent jobs in the app cannot disturb each other).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Cancelled, ConfigError

#: The downstream classifiers on offer, all trained from scratch (no downloaded weights): the small CNN
#: every figure of the shipped reports uses, and torchvision's ResNet-18, DenseNet-121 and VGG-11
#: (the paper trained VGG16, DenseNet121 and custom CNNs) with their stems adapted to 16-64 px images.
ARCHITECTURES = {
    "small-cnn": "the fixed small CNN (three conv blocks; seconds to train on a CPU)",
    "resnet18": "torchvision ResNet-18, 3x3 stem without max-pool below 64 px (11 M weights; minutes per training on a CPU)",
    "densenet121": "torchvision DenseNet-121, 3x3 stem without pooling below 64 px (7 M weights; the slowest on a CPU)",
    "vgg11": "torchvision VGG-11 with batch norm, pools kept while the image is 2 px or more, global-pool head (9 M weights)",
}


@dataclass(frozen=True)
class ClassifierBudget:
    """The downstream classifier: its ``architecture`` (ARCHITECTURES) and how long it trains,
    ``epochs`` passes clamped to [min_steps, max_steps]. Part of every report's settings, so of
    every cache key."""

    epochs: int = 20
    min_steps: int = 150
    max_steps: int = 800
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    architecture: str = "small-cnn"

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown classifier '{self.architecture}'; choose one of {', '.join(ARCHITECTURES)}")

    def steps_for(self, n: int) -> int:
        per_epoch = max(1, math.ceil(n / self.batch_size))
        return int(min(self.max_steps, max(self.min_steps, self.epochs * per_epoch)))

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_BUDGET = ClassifierBudget()


def with_classifier(budget: ClassifierBudget, architecture: str | None) -> ClassifierBudget:
    """``budget`` with another downstream architecture (None: as it is); an unknown name is a one-line ConfigError."""
    if not architecture:
        return budget
    if not isinstance(architecture, str):
        raise ConfigError(f"classifier must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    return dataclasses.replace(budget, architecture=architecture)


class _SeededDropout(nn.Module):
    """Dropout drawing its mask from a local generator (set by the trainer), never the global RNG."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


class SmallCNN(nn.Module):
    """Conv(3x3)-BN-ReLU blocks with max-pooling, global average pool, a ``feature_dim`` penultimate
    layer and a linear head. Images larger than 32 px get extra stride-2 stem blocks.

    Input: float (N, C, H, W) in [0, 1]. ``forward`` returns logits (N, num_classes);
    ``embed`` returns the penultimate activations (N, feature_dim).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, *, widths=(16, 32, 64), feature_dim: int = 128):
        super().__init__()
        self.in_channels, self.num_classes, self.image_size = int(in_channels), int(num_classes), int(image_size)
        self.widths, self.feature_dim = tuple(widths), int(feature_dim)
        layers: list[nn.Module] = []
        c = in_channels
        n_stem = max(0, math.ceil(math.log2(image_size / 32))) if image_size > 32 else 0
        for _ in range(n_stem):
            layers += [nn.Conv2d(c, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
            c = widths[0]
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c, feature_dim)
        self.drop = _SeededDropout(0.2)
        self.head = nn.Linear(feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x * 2.0 - 1.0)
        h = h.mean(dim=(2, 3))
        return F.relu(self.fc(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x)))

    def arch(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "widths": list(self.widths),
            "feature_dim": self.feature_dim,
        }


def _torchvision_classifier(architecture: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A torchvision architecture (random weights) adapted to small images: an ImageNet stem (7x7
    stride 2 + max-pool) would shrink a 28 px image to 7 px before the first block, so below 64 px
    the stem is a 3x3 stride-1 convolution without pooling, as for CIFAR; the input takes 1 or 3 channels."""
    import torchvision

    small = image_size < 64
    if architecture == "resnet18":
        m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False) if small else nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if small:
            m.maxpool = nn.Identity()
        return m
    if architecture == "densenet121":
        m = torchvision.models.densenet121(weights=None, num_classes=num_classes)
        f = m.features
        f.conv0 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False) if small else nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if small:
            f.pool0 = nn.Identity()
        return m
    m = torchvision.models.vgg11_bn(weights=None)
    layers, size = list(m.features), image_size
    layers[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    kept = []
    for layer in layers:  # a pool that would take the map below 1 px is dropped
        if isinstance(layer, nn.MaxPool2d):
            if size < 2:
                continue
            size //= 2
        kept.append(layer)
    m.features = nn.Sequential(*kept)
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.classifier = nn.Linear(512, num_classes)  # ImageNet's 4096-wide head would hold 100 M weights for a 28 px image
    return m


def build_classifier(in_channels: int, num_classes: int, image_size: int, *, seed: int = 0, architecture: str = "small-cnn", **arch) -> nn.Module:
    """Build the classifier with weights drawn from a local generator seeded by ``seed`` (PyTorch's
    default init distributions, so results do not depend on the global RNG state)."""
    if architecture == "small-cnn":
        model = SmallCNN(in_channels, num_classes, image_size, **arch)
    elif architecture in ARCHITECTURES:
        # torchvision initialises from the global RNG while it builds: fork it so the caller's stream is left as it was;
        # every weight is drawn again below from the local generator.
        with torch.random.fork_rng(devices=[]):
            model = _torchvision_classifier(architecture, in_channels, num_classes, image_size)
    else:
        raise ConfigError(f"unknown classifier '{architecture}'; choose one of {', '.join(ARCHITECTURES)}")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return model


def _as_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Accept float (N, C, H, W) in [0, 1] or uint8 (N, H, W, C) / (N, C, H, W); return float NCHW."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.ndim != 4:
        raise ConfigError(f"images must be a 4-D batch (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)
        return images.float().div_(255.0)
    return images.float()


def train_classifier(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    num_classes: int,
    *,
    seed: int = 0,
    budget: ClassifierBudget = DEFAULT_BUDGET,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    augment: bool = True,
    budget_n: int | None = None,
) -> nn.Module:
    """Train the classifier of ``budget.architecture`` on ``images`` (N, C, H, W) in [0, 1] (or uint8) and ``labels`` (N,).

    Adam (lr, weight decay and step count from ``budget``), cosine decay, batch ``budget.batch_size``,
    random-flip-free light augmentation (random 1-pixel shifts) when ``augment``. Returns the model
    in eval mode on ``device``. Same inputs + seed + device -> same weights.

    ``budget_n``: size the step count for this many images instead of ``len(images)``. Arms that are
    compared (real only against real + synthetic) pass the real set's size, so they train for the same
    number of steps: otherwise a bigger training set trains longer and that passes for a gain.
    """
    device = torch.device(device)
    x = _as_float_images(images)
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(x) != len(y):
        raise ConfigError(f"got {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ConfigError("cannot train a classifier on an empty set")
    if x.shape[2] != x.shape[3]:
        raise ConfigError(f"images must be square, got {tuple(x.shape[2:])}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ConfigError(f"labels must be in 0..{num_classes - 1}")
    model = build_classifier(x.shape[1], num_classes, x.shape[2], seed=seed, architecture=budget.architecture).to(device)
    x, y = x.to(device), y.to(device)
    steps = budget.steps_for(len(x) if budget_n is None else int(budget_n))
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=budget.lr, total_steps=steps, pct_start=0.15)
    g_cpu = torch.Generator().manual_seed(int(seed) + 1)
    g_dev = torch.Generator(device=device).manual_seed(int(seed) + 2)
    drop = getattr(model, "drop", None)  # the small CNN's seeded dropout (the torchvision ones have none left)
    if drop is not None:
        drop.generator = g_dev
    model.train()
    bs = min(budget.batch_size, len(x))
    order = torch.randperm(len(x), generator=g_cpu)
    pos = 0
    for step in range(steps):
        if cancel is not None and cancel.is_set():
            raise Cancelled("classifier training cancelled")
        if pos + bs > len(x):
            order = torch.randperm(len(x), generator=g_cpu)
            pos = 0
        idx = order[pos : pos + bs].to(device)
        pos += bs
        xb, yb = x[idx], y[idx]
        if augment:
            # Random shifts of up to 1 px (replicate padding): cheap, label-preserving on every dataset.
            shifts = torch.randint(-1, 2, (2,), generator=g_cpu).tolist()
            if shifts != [0, 0]:
                xb = F.pad(xb, (1, 1, 1, 1), mode="replicate")
                h, w = x.shape[2], x.shape[3]
                xb = xb[:, :, 1 + shifts[0] : 1 + shifts[0] + h, 1 + shifts[1] : 1 + shifts[1] + w]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, steps)
    if drop is not None:
        drop.generator = None
    return model.eval()


@torch.no_grad()
def features(model: SmallCNN, images: torch.Tensor | np.ndarray, *, batch_size: int = 512) -> torch.Tensor:
    """Penultimate activations (N, feature_dim) float32 on CPU, computed in batches on the model's device."""
    x = _as_float_images(images)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model.embed(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.feature_dim)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels (N,) long on CPU."""
    x = _as_float_images(images)
    dev = next(model.parameters()).device
    model.eval()
    out = [model(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, images, labels, num_classes: int | None = None) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of ``model`` on a labelled set."""
    from sklearn.metrics import balanced_accuracy_score

    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu().numpy()
    p = predict(model, images).numpy()
    if len(y) == 0:
        return float("nan"), float("nan")
    acc = float((p == y).mean())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bacc = float(balanced_accuracy_score(y, p))
    return acc, bacc
