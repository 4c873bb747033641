"""The local MHRA at inference: its BatchNorm folded into the first 1×1×1 projection."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.layers import LocalMHRA
from .swap import InferenceOnly


def fold_batchnorm(m: LocalMHRA) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``m.down ∘ m.norm`` with the BatchNorm's running statistics (eval), computed in
    fp32 and returned in the weights' dtype (bf16 models fold without extra rounding).  Cheap next to the
    projection itself (C'×C multiplies), so it is recomputed at every call and never goes stale."""
    bn, dtype = m.norm, m.down.weight.dtype
    w, b = m.down.weight.float(), m.down.bias.float()
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.float() - bn.running_mean.float() * scale
    return (w * scale).to(dtype), torch.addmv(b, w, shift).to(dtype)


class FoldedLocalMHRA(InferenceOnly, LocalMHRA):
    """``LocalMHRA`` in eval mode with BN ∘ down as one linear layer: one pass over the tokens fewer."""

    REFERENCE = LocalMHRA

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dwconv(F.linear(x, *fold_batchnorm(self))))
