"""Speed and memory variants of the model's blocks, swapped in once by :func:`optimize`.

The reference model (``uniformerv2.model``) computes UniFormerV2 the plain way.  Each variant here is a
subclass of one reference block that keeps its parameter names and overrides how it computes (so state
dicts, checkpoints and optimizers see no difference), and ``optimize`` swaps them in explicitly, the way
timm's ``reparameterize_model`` does; nothing in a ``forward`` decides at run time which path to take.

    variant                                   replaces        applied when
    accel.inplace.InplaceLocalUniBlock        LocalUniBlock   for_inference, inplace=True
    accel.local.FoldedLocalMHRA               LocalMHRA       for_inference
    accel.mlp.LeanMlp                         Mlp             training, lean_mlp=True (MLPs without dropout)
    accel.checkpoint.Checkpoint{Branches,     LocalUniBlock   training, grad_checkpointing=N (first N blocks)
        Block,SaveAttention}
    accel.dpe.TritonDPE                       DPE             dpe="triton" (CUDA with Triton)

Every variant is checked against the reference in tests/test_accel.py (CPU, fp32), and docs/benchmarks.md
gives the measurement that keeps each one.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from ..errors import UserError
from ..model.layers import LocalMHRA, Mlp
from .checkpoint import POLICIES
from .dpe import TritonDPE
from .inplace import InplaceLocalUniBlock
from .local import FoldedLocalMHRA
from .mlp import LeanMlp
from .swap import revert, swap, variants_in

DPE_CHOICES = ("auto", "conv", "triton")
CHECKPOINT_POLICIES = tuple(POLICIES)


def resolve_dpe(dpe: str, device: torch.device) -> str:
    """The DPE implementation ``dpe`` means on ``device``: "conv" is the reference ``Conv3d``.

    "auto" is "conv" everywhere for now: on CPU it is the fastest we measured (docs/benchmarks.md), and on
    CUDA the Triton kernel becomes the default only once a GPU run of benchmarks/gpu_suite.py shows it wins.
    """
    if dpe not in DPE_CHOICES:
        raise UserError(f"dpe must be one of {DPE_CHOICES}, got {dpe!r}")
    if dpe == "triton":
        if importlib.util.find_spec("triton") is None:
            raise UserError("dpe='triton' needs Triton (CUDA builds of PyTorch install it)")
        if device.type != "cuda":
            raise UserError(f"dpe='triton' runs on CUDA devices; the model is on {device}")
    return "conv" if dpe == "auto" else dpe


def optimize(model: nn.Module, *, for_inference: bool, dpe: str = "auto", inplace: bool = True,
             lean_mlp: bool = True, grad_checkpointing: bool | int = 0,
             checkpoint_policy: str = "branches") -> nn.Module:
    """Swap the speed/memory variants into ``model`` (a ``UniFormerV2``) in place and return it.

    for_inference=True: eval mode; local MHRA BatchNorm folded; with ``inplace`` (default) the backbone
        layers update the residual stream in place — for running the model in its own dtype under
        ``torch.inference_mode()`` (what ``VideoClassifier`` does). Use ``inplace=False`` under autocast,
        ``torch.compile`` or export. The model refuses ``.train()`` afterwards.
    for_inference=False (training): the memory-lean MLP where there is no dropout (``lean_mlp``), and
        activation checkpointing of the first ``grad_checkpointing`` blocks (True = all) with
        ``checkpoint_policy`` ("branches", "block" or "save_attention").
    dpe: "auto", "conv" (reference) or "triton" (CUDA; see :func:`resolve_dpe`).
    Call it after moving the model to its device; calling it again starts from the reference blocks.
    """
    if checkpoint_policy not in POLICIES:
        raise UserError(f"checkpoint policy must be one of {CHECKPOINT_POLICIES}, got {checkpoint_policy!r}")
    if for_inference and grad_checkpointing:
        raise UserError("activation checkpointing is for training (for_inference=False)")
    param = next(model.parameters(), None)
    impl = resolve_dpe(dpe, param.device if param is not None else torch.device("cpu"))
    revert(model)
    if for_inference:
        model.eval()
        for m in model.modules():
            if type(m) is LocalMHRA:
                swap(m, FoldedLocalMHRA)
        if inplace:
            for blk in model.blocks:
                swap(blk, InplaceLocalUniBlock)
    else:
        if lean_mlp:
            for m in model.modules():
                if type(m) is Mlp and m.drop.p == 0:
                    swap(m, LeanMlp)
        count = len(model.blocks) if grad_checkpointing is True else int(grad_checkpointing or 0)
        for blk in list(model.blocks)[:count]:
            swap(blk, POLICIES[checkpoint_policy])
    if impl == "triton":
        for m in model.dpe:
            swap(m, TritonDPE)
    return model


__all__ = ["optimize", "revert", "swap", "variants_in", "resolve_dpe", "DPE_CHOICES", "CHECKPOINT_POLICIES"]
