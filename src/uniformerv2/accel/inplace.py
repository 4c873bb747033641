"""Eager inference that updates the residual stream in place: ``InplaceLocalUniBlock``.

For inference without autograd and without autocast (``VideoClassifier`` runs the model in its own dtype
under ``torch.inference_mode``), the same layer as the reference with fewer passes over the activations:
bias and residual adds ride on ``addmm_`` (the bias is added to the stream first, then the GEMM accumulates
into it); QuickGELU(h) = SiLU(1.702·h)/1.702 with the 1.702 folded into the two GEMMs' scalars; the local
MHRA runs its projections on the contiguous (B·T·L, C) stream — class-token rows included, 1/L extra work —
instead of copying the strided patch rows out, with its BatchNorm folded; only the patch rows receive its
update (its temporal convolution is per token position, so the patch rows are exactly the patch-only
result).  Equal to the reference up to float rounding; on a 2-core CPU it is what makes batch-1 B/16
inference faster than the official code (docs/benchmarks.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..model.layers import LocalMHRA, LocalUniBlock
from .local import fold_batchnorm
from .swap import InferenceOnly

_GELU_SCALE = 1.702


def add_local_inplace(m: LocalMHRA, x: torch.Tensor, t: int) -> None:
    """x (B·T, L, C) += the local MHRA's update of the patch tokens (eval statistics)."""
    bt, l, c = x.shape
    b = bt // t
    weight, bias = fold_batchnorm(m)
    h = torch.addmm(bias, x.view(bt * l, c), weight.t()).view(b, t, l, -1)
    h = m.dwconv(h)
    delta = torch.addmm(m.up.bias, h.view(bt * l, -1), m.up.weight.t()).view(b, t, l, c)
    x.view(b, t, l, c)[:, :, 1:].add_(delta[:, :, 1:])


class InplaceLocalUniBlock(InferenceOnly, LocalUniBlock):
    """``LocalUniBlock`` for eager inference in the weights' dtype: ``x`` is updated in place and returned."""

    REFERENCE = LocalUniBlock

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
            raise UserError("this model was optimized for inference without autograd or autocast; run it under "
                            "torch.inference_mode() in its own dtype, or optimize(model, for_inference=True, "
                            "inplace=False)")
        bt, l, c = x.shape
        flat = x.view(bt * l, c)
        if self.lmhra1 is not None:
            add_local_inplace(self.lmhra1, x, t)
        h = self.attn.mix(self.norm1(x))
        flat.add_(self.attn.proj.bias).addmm_(h.view(bt * l, c), self.attn.proj.weight.t())
        if self.lmhra2 is not None:
            add_local_inplace(self.lmhra2, x, t)
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        h = torch.addmm(fc1.bias, self.norm2(x).view(bt * l, c), fc1.weight.t(), beta=_GELU_SCALE, alpha=_GELU_SCALE)
        F.silu(h, inplace=True)
        flat.add_(fc2.bias).addmm_(h, fc2.weight.t(), alpha=1.0 / _GELU_SCALE)
        return x
