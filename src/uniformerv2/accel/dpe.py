"""``TritonDPE``: the DPE and its residual add in one Triton kernel (CUDA, eager; see kernels.py).

cuDNN runs the depthwise 3×3×3 convolution of the DPE far from its memory bound on bf16 activations (the
anchor measurement: 8.7 ms per call on an H100 for (64, 768, 8, 14, 14), ~80× the bound).  The kernel reads
the layer's tokens once and writes the global block's keys/values once.  Kept, isolated, until a GPU run
of ``benchmarks/gpu_suite.py`` decides whether it becomes the default on CUDA.
"""
from __future__ import annotations

import math

import torch

from ..model.layers import DPE


class TritonDPE(DPE):
    REFERENCE = DPE

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        from .kernels import dpe_tokens  # imports Triton: only when this variant runs

        bt, l, c = x.shape
        return dpe_tokens(x, self.conv.weight, self.conv.bias, t, math.isqrt(l - 1)).view(bt // t, t * l, c)
