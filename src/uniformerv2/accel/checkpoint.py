"""Activation checkpointing of backbone layers, one ``LocalUniBlock`` variant per policy.

  "branches"        the attention and MLP branches are recomputed in backward; the layer keeps its two
                    residual inputs (and what the local MHRA saves)
  "block"           the whole layer, local MHRA included, is recomputed from its input, which is all it keeps
  "save_attention"  as "branches", but the attention kernel's output is kept, so only the cheap projections
                    and norms are recomputed
Less memory costs more recomputation: docs/benchmarks.md gives saved bytes and step time per policy.
"""
from __future__ import annotations

from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from ..model.layers import LocalUniBlock


def _save_attention_policy(ctx, op, *args, **kwargs):
    name = str(op)
    if "scaled_dot_product" in name or "flash_attention" in name or "efficient_attention" in name:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _save_attention_context():
    return create_selective_checkpoint_contexts(_save_attention_policy)


class CheckpointBranches(LocalUniBlock):
    REFERENCE = LocalUniBlock

    def attention_branch(self, x):
        return checkpoint(super().attention_branch, x, use_reentrant=False)

    def mlp_branch(self, x):
        return checkpoint(super().mlp_branch, x, use_reentrant=False)


class CheckpointSaveAttention(LocalUniBlock):
    REFERENCE = LocalUniBlock

    def attention_branch(self, x):
        return checkpoint(super().attention_branch, x, use_reentrant=False, context_fn=_save_attention_context)

    def mlp_branch(self, x):
        return checkpoint(super().mlp_branch, x, use_reentrant=False, context_fn=_save_attention_context)


class CheckpointBlock(LocalUniBlock):
    REFERENCE = LocalUniBlock

    def forward(self, x, t):
        return checkpoint(super().forward, x, t, use_reentrant=False)


POLICIES = {"branches": CheckpointBranches, "block": CheckpointBlock, "save_attention": CheckpointSaveAttention}
