"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6).

One network learns both the conditional and the unconditional model (labels dropped to a null
label in training); sampling mixes them, f_u + w (f_c - f_u) (eq. 6 with our w = their 1 + w),
whether f is a noise (DDPM, LDM) or a velocity (flow). w = 1 is the plain conditional model (one pass), w = 0 the unconditional one, and
any other w runs both halves in one batched pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    """How a family guides its network. The two switches record where the families' guidance was
    written differently and is kept so, because changing either moves their images (and, for the
    first, the network-evaluation count in their reports):

    ``zero_is_unconditional``: w = 0 runs the unconditional half alone (one pass; the flow model)
    instead of the batched pair weighted 0 (the DDPM and LDM, two passes).
    ``mix_in_float32``: the mix is computed in float32 even when the network ran in bf16 / fp16
    under autocast (the flow model); otherwise in the network's output dtype.
    """

    null_label: int
    zero_is_unconditional: bool = False
    mix_in_float32: bool = False

    def passes(self, w: float) -> int:
        """Network passes per prediction at guidance w."""
        return 1 if w == 1.0 or (self.zero_is_unconditional and w == 0.0) else 2

    def predictor(self, net: nn.Module, labels: torch.Tensor, w: float) -> Predictor:
        """f(x, t) = the guided prediction of ``net(x, t, y)`` for these labels (one per image)."""
        null = torch.full_like(labels, self.null_label)

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if w == 1.0:
                return net(x, t, labels)
            if self.zero_is_unconditional and w == 0.0:
                return net(x, t, null)
            out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
            f_c, f_u = (out.float() if self.mix_in_float32 else out).chunk(2)
            return f_u + w * (f_c - f_u)

        return predict
