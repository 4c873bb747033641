"""Building blocks of UniFormerV2, in the paper's names: the reference implementation.

Token layout used everywhere inside the model (made once, in ``UniFormerV2.embed``):

    x: (B·T, L, C) with L = 1 + H·W — batch-first, frame index fastest inside B·T, token 0 of every
       frame is that frame's class token.  ``x.view(B, T, L, C)`` is free, and so is
       ``x.view(B, T, L, C)[:, :, 1:]`` for the patch tokens of every frame.

Each module has one ``forward`` that computes what the paper and the official code compute, in the
clearest form; there are no permutes to the official sequence-first layout.  Faster or leaner versions of
some of these modules live in :mod:`uniformerv2.accel` and are swapped in by ``accel.optimize(model, ...)``;
they keep these modules' parameter names, so state dicts and checkpoints do not change.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """x·sigmoid(1.702x), the activation of CLIP's MLPs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def drop_path(x: torch.Tensor, p: float, training: bool, mask_shape: tuple[int, ...]) -> torch.Tensor:
    """Stochastic depth on a residual branch ``x`` with a keep mask of ``mask_shape`` (broadcast)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty(mask_shape).bernoulli_(keep).div_(keep)
    return x * mask


class Mlp(nn.Module):
    """fc1 → QuickGELU → dropout → fc2."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


def split_heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L, C) -> (B, heads, L, C/heads)."""
    b, l, c = x.shape
    return x.view(b, l, n, c // n).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads·d)."""
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


class Attention(nn.Module):
    """GS-MHRA: the ViT's own multi-head self-attention, per frame, with a fused QKV projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output before the output projection, (B, L, C)."""
        b, l, c = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return merge_heads(F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mix(x))


class TemporalDepthwiseConv(nn.Module):
    """Depthwise convolution along T (kernel k, zero padding k//2) on a (B, T, N, C) tensor.

    The same numbers as the official ``Conv3d(C, C, (k,1,1), groups=C)`` on (B, C, T, H, W), computed as a
    per-channel weighted sum of the tensor shifted along T, with no layout change.  ``weight`` is (C, k).
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        # Conv3d's default init for a depthwise kernel: fan_in = k.
        bound = 1.0 / kernel_size**0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # out[t] = bias + sum_k w[k]·x[t + k - pad]; out-of-range taps read zero padding, i.e. are skipped.
        t, pad = x.shape[1], self.kernel_size // 2
        out = torch.addcmul(self.bias, x, self.weight[:, pad])
        for k in range(self.kernel_size):
            s = k - pad
            if s == 0 or abs(s) >= t:
                continue
            if s < 0:
                out[:, -s:].addcmul_(x[:, : t + s], self.weight[:, k])
            else:
                out[:, : t - s].addcmul_(x[:, s:], self.weight[:, k])
        return out


class LocalMHRA(nn.Module):
    """Local temporal MHRA: BN → 1×1×1 conv (C→C') → depthwise t×1×1 conv → 1×1×1 conv (C'→C).

    Works on the patch tokens of the (B, T, H·W, C) view; the 1×1×1 convolutions are linear layers
    over C.  The last projection starts at zero, so the block is the identity at initialisation.
    """

    def __init__(self, dim: int, reduction: float = 1.5, kernel_size: int = 3):
        super().__init__()
        hidden = int(dim // reduction)
        self.norm = nn.BatchNorm1d(dim)
        self.down = nn.Linear(dim, hidden)
        self.dwconv = TemporalDepthwiseConv(hidden, kernel_size)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, N, C) patch tokens -> (B, T, N, C) update (without the residual)."""
        shape = x.shape
        h = self.down(self.norm(x.reshape(-1, shape[-1])).view(shape))
        return self.up(self.dwconv(h))


class LocalUniBlock(nn.Module):
    """A backbone layer: [local MHRA] → per-frame MHSA → [local MHRA] → MLP, each residual.

    ``local_mhra`` is "none", "single" (before attention) or "double" (before and after attention).
    Frame class tokens never pass through the local MHRA.

    Drop path (stochastic depth) on the attention and MLP branches: ``drop_path_mode="official"`` draws one
    mask per token position, shared by every frame and clip (the official code applies timm's DropPath to its
    sequence-first (L, N·T, C) tensors, which masks dim 0); ``"sample"`` draws one per clip.  The local MHRA
    branch is dropped per clip in both modes (official layout (N, C, T, H, W)).
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 local_mhra: str = "none", reduction: float = 1.5, drop_path_mode: str = "official"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.lmhra1 = LocalMHRA(dim, reduction) if local_mhra in ("single", "double") else None
        self.lmhra2 = LocalMHRA(dim, reduction) if local_mhra == "double" else None
        self.drop_path = drop_path
        self.drop_path_mode = drop_path_mode

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """x: (B·T, L, C) -> (B·T, L, C)."""
        if self.lmhra1 is not None:
            x = self.local_residual(self.lmhra1, x, t)
        x = x + self.drop_branch(self.attention_branch(x), t)
        if self.lmhra2 is not None:
            x = self.local_residual(self.lmhra2, x, t)
        return x + self.drop_branch(self.mlp_branch(x), t)

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm1(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(x))

    def drop_branch(self, branch: torch.Tensor, t: int) -> torch.Tensor:
        if not self.training or self.drop_path == 0:
            return branch
        if self.drop_path_mode == "official":  # one draw per token position
            return drop_path(branch, self.drop_path, True, (1, branch.shape[1], 1))
        clips = branch.view(-1, t, *branch.shape[1:])  # one draw per clip, shared by its frames
        return drop_path(clips, self.drop_path, True, (clips.shape[0], 1, 1, 1)).flatten(0, 1)

    def local_residual(self, m: LocalMHRA, x: torch.Tensor, t: int) -> torch.Tensor:
        """x + local MHRA update on the patch tokens; class tokens unchanged."""
        bt, l, c = x.shape
        frames = x.view(bt // t, t, l, c)
        delta = drop_path(m(frames[:, :, 1:]), self.drop_path, self.training, (bt // t, 1, 1, 1))
        return torch.cat([frames[:, :, :1], frames[:, :, 1:] + delta], dim=2).view(bt, l, c)


class DPE(nn.Module):
    """Dynamic position encoding: a depthwise 3×3×3 convolution over the (T, H, W) patch grid, added to the
    patch tokens before a Global UniBlock reads them.  ``conv`` is a plain depthwise ``Conv3d``."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        nn.init.zeros_(self.conv.bias)  # the weight keeps the default init, as official

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Tokens of one layer (B·T, L, C) -> the global block's keys/values (B, T·L, C): the DPE of the
        patch grid added to the patch tokens, class tokens unchanged, frames in time order."""
        bt, l, c = x.shape
        b, g = bt // t, math.isqrt(l - 1)
        frames = x.view(b, t, l, c)
        grid = frames[:, :, 1:].permute(0, 3, 1, 2).reshape(b, c, t, g, g)  # (B, C, T, H, W), a view
        pos = self.conv(grid).reshape(b, c, t, l - 1).permute(0, 2, 3, 1)  # (B, T, H·W, C)
        return torch.cat([frames[:, :, :1], frames[:, :, 1:] + pos], dim=2).view(b, t * l, c)


class CrossAttention(nn.Module):
    """C-MHRA: queries (B, Nq, C) attend to key/value tokens (B, M, C); cost linear in M."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, m, c = kv.shape
        k, v = self.kv(kv).view(b, m, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(split_heads(self.q(q), self.num_heads), k, v)
        return self.proj(merge_heads(out))


class GlobalUniBlock(nn.Module):
    """Global UniBlock after the DPE: q ← q + C-MHRA(LN(q), LN(tokens)); q ← q + MLP(LN(q)).

    The output projections start at zero, so a fresh block is the identity on its query.  Drop path:
    ``"official"`` draws one mask for the whole batch (timm's DropPath on the official (1, N, C) query),
    ``"sample"`` one per clip.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.5,
                 drop_path: float = 0.0, drop_path_mode: str = "official"):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, round(dim * mlp_ratio), dropout)
        self.drop_path = drop_path
        self.drop_path_mode = drop_path_mode
        for lin in (self.attn.q, self.attn.kv, self.mlp.fc1):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """q: (B, Nq, C) queries; tokens: (B, M, C) keys/values -> (B, Nq, C)."""
        shape = (1, 1, 1) if self.drop_path_mode == "official" else (q.shape[0], 1, 1)
        q = q + drop_path(self.attn(self.norm_q(q), self.norm_kv(tokens)), self.drop_path, self.training, shape)
        q = q + drop_path(self.mlp(self.norm2(q)), self.drop_path, self.training, shape)
        return q


class Head(nn.Module):
    """LN → dropout → linear classifier."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.drop(self.norm(x)))
