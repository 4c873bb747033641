"""Building blocks of UniFormerV2, in the paper's names.

Token layout used everywhere inside the model (made once, in ``UniFormerV2.embed``):

    x: (B·T, L, C) with L = 1 + H·W — batch-first, frame index fastest inside B·T, token 0 of every
       frame is that frame's class token.  ``x.view(B, T, L, C)`` is free, and so is
       ``x.view(B, T, L, C)[:, :, 1:].reshape(B, T, H, W, C)`` for the patch grid.

Every module here reads that layout directly: the local temporal MHRA works on the (B, T, H·W, C)
view with linear layers and a shifted-sum temporal convolution, the DPE reads the (B, T, H, W, C)
view as a channels-last 3D tensor, and the global cross-attention reads (B, T·L, C).  There are no
permutes to a sequence-first layout.

Implementation choices that only change speed (the numbers agree up to float rounding; see
tests/test_perf_model.py), picked by measurement on the target device:

* ``DPE.impl``: "conv" (``F.conv3d``, default), "shift" (27 shifted multiply-adds on the channels-last
  (B, T, H, W, C) view — one fused kernel under ``torch.compile``), "conv2d" (three depthwise 2D
  convolutions, one per temporal tap, summed with a shift along T), "triton" (one kernel that reads the
  tokens and writes them with the DPE added, see kernels.py; CUDA + Triton, eager — it falls back to
  "shift" under ``torch.compile`` and to "conv" elsewhere).  ``UniFormerV2.set_dpe_impl``.
* ``LocalUniBlock.checkpoint_policy`` for activation checkpointing: "branches" (attention and MLP
  branches recomputed), "block" (the whole layer, local MHRA included: only its input is stored) or
  "save_attention" (like "branches" but the attention kernel's output is kept, so only the cheap
  projections and norms are recomputed).
* Eager inference path (``LocalUniBlock.forward_inplace``): no autograd, no autocast, not compiling —
  the residual stream is updated in place, biases and residuals go through ``addmm_``, QuickGELU is a
  single in-place SiLU with its 1.702 folded into the two GEMMs' scalars.  Chosen automatically by
  ``UniFormerV2.forward_features``; ``UniFormerV2.eager_fast_path = False`` turns it off.
* MLP memory in training (``Mlp.forward`` with grad enabled and dropout 0, i.e. every backbone
  layer): QuickGELU and fc2 run as one autograd function, ``_QuickGELULinear``, that saves only fc1's
  output h (plus fc2's weight) and recomputes sigmoid(1.702·h) and the activation in backward.  The
  plain composition saves h, the sigmoid output and the activation output — three tokens×4C tensors —
  so per token an MLP keeps 5C values (fc1 input and h) instead of 13C: two tokens×4C tensors fewer.
  Works under ``torch.autocast`` (computed in h's dtype, as autocast would run fc2),
  ``torch.compile`` and every checkpoint policy.  The module-level switch ``LEAN_MLP = False`` brings
  back the plain path (for comparisons); inference and ``forward_inplace`` never use it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

DPE_IMPLS = ("conv", "shift", "conv2d", "triton")
CHECKPOINT_POLICIES = ("branches", "block", "save_attention")
_GELU_SCALE = 1.702


def _save_attention_policy(ctx, op, *args, **kwargs):
    name = str(op)
    if "scaled_dot_product" in name or "flash_attention" in name or "efficient_attention" in name:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _save_attention_context():
    return create_selective_checkpoint_contexts(_save_attention_policy)


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


LEAN_MLP = True  # False: Mlp always runs the plain fc2(drop(act(fc1(x)))) (see the module docstring)


class _QuickGELULinear(torch.autograd.Function):
    """``F.linear(QuickGELU(h), weight, bias)`` that saves only ``h`` and ``weight`` for backward.

    The plain composition keeps h, sigmoid(1.702·h) and the activation a = h·sigmoid(1.702·h) alive
    until backward (three tensors of h's size); here backward recomputes s = sigmoid(1.702·h) and
    a = h·s from h and uses

        grad_h = (g @ weight) · (s + 1.702·h·s·(1 − s)),  grad_weight = g_flatᵀ @ a_flat,
        grad_bias = g summed over all leading dims.

    Everything is computed in the dtype of the inputs: under autocast the caller passes
    ``weight``/``bias`` already cast to h's dtype (autograd casts their gradients back), which is what
    autocast does for a plain fc2.  ``h`` may have any number of leading dims.
    """

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        return F.linear(h * torch.sigmoid(_GELU_SCALE * h), weight, bias)

    @staticmethod
    def backward(ctx, g):
        h, weight = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad
        grad_h = grad_w = grad_b = None
        g_flat = g.reshape(-1, g.shape[-1])
        if need_h or need_w:
            s = torch.sigmoid(_GELU_SCALE * h)
            if need_w:
                a = h * s
                grad_w = g_flat.t() @ a.reshape(-1, a.shape[-1])
                del a
            if need_h:
                # QuickGELU'(h) = s + 1.702·h·s·(1 − s) = s·(1 + 1.702·h·(1 − s))
                slope = (1 - s).mul_(h).mul_(_GELU_SCALE).add_(1).mul_(s)
                grad_h = (g @ weight).mul_(slope)
        if need_b:
            grad_b = g_flat.sum(0)
        return grad_h, grad_w, grad_b


class Mlp(nn.Module):
    """fc1 → QuickGELU → dropout → fc2.  Training with dropout 0 runs QuickGELU+fc2 as one
    :class:`_QuickGELULinear` (same numbers, two activation-sized tensors fewer saved for backward)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def _lean(self) -> bool:
        return LEAN_MLP and self.training and torch.is_grad_enabled() and self.drop.p == 0

    def forward(self, x):
        if self._lean():
            h = self.fc1(x)
            bias = self.fc2.bias
            return _QuickGELULinear.apply(h, self.fc2.weight.to(h.dtype), None if bias is None else bias.to(h.dtype))
        return self.fc2(self.drop(self.act(self.fc1(x))))


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L, C) -> (B, heads, L, C/heads)."""
    b, l, c = x.shape
    return x.view(b, l, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
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
        return _merge(F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mix(x))


class TemporalDepthwiseConv(nn.Module):
    """Depthwise convolution along T (kernel k, zero padding k//2) on a (B, T, N, C) tensor.

    Computed as a per-channel weighted sum of the tensor shifted along T — the same numbers as a
    ``Conv3d(C, C, (k,1,1), groups=C)`` but with no layout change.  ``weight`` is (C, k).
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

    def folded_down(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of ``down ∘ norm`` with the BatchNorm's running statistics (eval only),
        computed in fp32 and returned in the weights' dtype (bf16 models fold without extra rounding)."""
        bn, dtype = self.norm, self.down.weight.dtype
        w, b = self.down.weight.float(), self.down.bias.float()
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        shift = bn.bias.float() - bn.running_mean.float() * scale
        return (w * scale).to(dtype), torch.addmv(b, w, shift).to(dtype)

    def folded_down_cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`folded_down`, recomputed only when a parameter or statistic changed (eager inference)."""
        tensors = (self.norm.weight, self.norm.bias, self.norm.running_mean, self.norm.running_var,
                   self.down.weight, self.down.bias)
        try:
            key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        except RuntimeError:  # inference tensors carry no version counter: no caching
            return self.folded_down()
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            cached = (key, self.folded_down())
            self.__dict__["_folded"] = cached
        return cached[1]

    def _fold(self) -> bool:
        return not self.training and self.fold_bn and self.norm.running_mean is not None

    fold_bn = True  # eval: BatchNorm folded into ``down`` (set False to run them separately)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, N, C) patch tokens -> (B, T, N, C) update (without the residual)."""
        if self._fold():
            h = F.linear(x, *self.folded_down())
        else:
            shape = x.shape
            h = self.down(self.norm(x.reshape(-1, shape[-1])).view(shape))
        return self.up(self.dwconv(h))


class LocalUniBlock(nn.Module):
    """A backbone layer: [local MHRA] → per-frame MHSA → [local MHRA] → MLP, each residual.

    ``local_mhra`` is "none", "single" (before attention) or "double" (before and after attention).
    Frame class tokens never pass through the local MHRA.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
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
        self.grad_checkpointing = False
        self.checkpoint_policy = "branches"

    def _mask_shape(self, x: torch.Tensor, t: int) -> tuple[int, ...]:
        # official: timm DropPath over dim 0 of (L, N·T, C) = one draw per token position.
        if self.drop_path_mode == "official":
            return (1, x.shape[1], 1)
        b = x.shape[0] // t  # per clip: every frame of a clip shares the draw
        return (b, 1, 1, 1)

    def _residual(self, x: torch.Tensor, branch: torch.Tensor, t: int) -> torch.Tensor:
        if self.training and self.drop_path > 0:
            shape = self._mask_shape(x, t)
            if len(shape) == 4:
                branch = drop_path(branch.view(-1, t, *branch.shape[1:]), self.drop_path, True, shape)
                branch = branch.flatten(0, 1)
            else:
                branch = drop_path(branch, self.drop_path, True, shape)
        return x + branch

    def _local(self, m: LocalMHRA, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, l, c = x.shape
        b = bt // t
        frames = x.view(b, t, l, c)
        delta = m(frames[:, :, 1:])  # (B, T, HW, C)
        delta = drop_path(delta, self.drop_path, self.training, (b, 1, 1, 1))
        # class tokens get a zero update
        return torch.cat([frames[:, :, :1], frames[:, :, 1:] + delta], dim=2).view(bt, l, c)

    def _attn(self, x):
        return self.attn(self.norm1(x))

    def _mlp(self, x):
        return self.mlp(self.norm2(x))

    def _layer(self, x: torch.Tensor, t: int, ckpt: bool = False) -> torch.Tensor:
        if ckpt and self.checkpoint_policy == "save_attention":
            def run(fn, y):
                return checkpoint(fn, y, use_reentrant=False, context_fn=_save_attention_context)
        elif ckpt:
            def run(fn, y):
                return checkpoint(fn, y, use_reentrant=False)
        else:
            def run(fn, y):
                return fn(y)
        if self.lmhra1 is not None:
            x = self._local(self.lmhra1, x, t)
        x = self._residual(x, run(self._attn, x), t)
        if self.lmhra2 is not None:
            x = self._local(self.lmhra2, x, t)
        return self._residual(x, run(self._mlp, x), t)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        if ckpt and self.checkpoint_policy == "block":
            return checkpoint(self._layer, x, t, use_reentrant=False)
        return self._layer(x, t, ckpt)

    @torch.no_grad()
    def forward_inplace(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Eager inference (eval, no autocast): the same layer, updating ``x`` (B·T, L, C) in place.

        Residual adds ride on ``addmm_`` (bias added first, then the GEMM accumulates into the stream);
        QuickGELU(h) = SiLU(1.702·h)/1.702 with the 1.702 folded into the scalars of the two GEMMs.
        Equal to :meth:`forward` up to float rounding.
        """
        bt, l, c = x.shape
        flat = x.view(bt * l, c)
        if self.lmhra1 is not None:
            self._local_inplace(self.lmhra1, x, t)
        h = self.attn.mix(self.norm1(x))
        flat.add_(self.attn.proj.bias).addmm_(h.view(bt * l, c), self.attn.proj.weight.t())
        if self.lmhra2 is not None:
            self._local_inplace(self.lmhra2, x, t)
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        h = torch.addmm(fc1.bias, self.norm2(x).view(bt * l, c), fc1.weight.t(), beta=_GELU_SCALE, alpha=_GELU_SCALE)
        F.silu(h, inplace=True)
        flat.add_(fc2.bias).addmm_(h, fc2.weight.t(), alpha=1.0 / _GELU_SCALE)
        return x

    @staticmethod
    def _local_inplace(m: LocalMHRA, x: torch.Tensor, t: int) -> None:
        bt, l, c = x.shape
        frames = x.view(bt // t, t, l, c)
        if not m._fold():
            frames[:, :, 1:].add_(m(frames[:, :, 1:]))
            return
        # Run the per-token projections on every row of the contiguous (B·T·L, C) stream — class-token
        # rows included (1/L extra work) — instead of copying the strided patch rows out; the temporal
        # conv is per token position, so the patch rows are exactly the patch-only result.  Only the
        # patch rows receive the update.
        weight, bias = m.folded_down_cached()
        h = torch.addmm(bias, x.view(bt * l, c), weight.t()).view(bt // t, t, l, -1)
        h = m.dwconv(h)
        delta = torch.addmm(m.up.bias, h.view(bt * l, -1), m.up.weight.t()).view(bt // t, t, l, c)
        frames[:, :, 1:].add_(delta[:, :, 1:])


class DPE(nn.Module):
    """Dynamic position encoding: a depthwise 3×3×3 convolution over the (T, H, W) patch grid.

    Reads the (B, T, H, W, C) view as a channels-last 3D tensor; ``weight`` is (C, 1, 3, 3, 3).
    ``impl`` picks how it is computed (same numbers up to rounding; see the module docstring).
    """

    def __init__(self, dim: int, kernel_size: int = 3, impl: str = "conv"):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        nn.init.zeros_(self.conv.bias)  # the weight keeps the default init, as official
        self.impl = impl

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str):
        if value not in DPE_IMPLS:
            raise ValueError(f"DPE impl must be one of {DPE_IMPLS}, got {value!r}")
        self._impl = value

    def add_to_tokens(self, x: torch.Tensor, t: int, inplace_ok: bool = False) -> torch.Tensor:
        """Tokens of one layer (B·T, L, C) -> (B, T·L, C), the DPE of the patch grid added to the patch
        tokens, class tokens unchanged: the keys/values of a global block.  ``inplace_ok`` (no autograd):
        write the sum straight into the new tensor."""
        bt, l, c = x.shape
        b, g = bt // t, math.isqrt(l - 1)
        if self._impl == "triton" and not torch.compiler.is_compiling():
            from .kernels import dpe_tokens, triton_usable  # imports Triton: only when asked for

            if triton_usable(x):
                return dpe_tokens(x, self.conv.weight, self.conv.bias, t, g).view(b, t * l, c)
        frames = x.view(b, t, l, c)
        pos = self(frames[:, :, 1:].reshape(b, t, g, g, c)).reshape(b, t, l - 1, c)
        if inplace_ok and pos.dtype == x.dtype:
            out = torch.empty_like(frames)
            out[:, :, 0] = frames[:, :, 0]
            torch.add(frames[:, :, 1:], pos, out=out[:, :, 1:])
            return out.view(b, t * l, c)
        return torch.cat([frames[:, :, :1], frames[:, :, 1:] + pos], dim=2).view(b, t * l, c)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """grid: (B, T, H, W, C) -> (B, T, H, W, C)."""
        if self._impl == "shift" or (self._impl == "triton" and torch.compiler.is_compiling()):
            return self._shift(grid)
        if self._impl == "conv2d":
            return self._conv2d(grid)
        out = self.conv(grid.permute(0, 4, 1, 2, 3))
        return out.permute(0, 2, 3, 4, 1)

    def _shift(self, grid: torch.Tensor) -> torch.Tensor:
        # out = bias + sum over the k³ taps of w[tap] · (zero-padded grid shifted by the tap)
        b, t, h, w, c = grid.shape
        k = self.conv.kernel_size[0]
        p = k // 2
        xp = F.pad(grid, (0, 0, p, p, p, p, p, p))
        wt = self.conv.weight.view(c, k * k * k).to(grid.dtype)
        out = self.conv.bias.to(grid.dtype)
        i = 0
        for dt in range(k):
            for dh in range(k):
                for dw in range(k):
                    out = out + xp[:, dt:dt + t, dh:dh + h, dw:dw + w] * wt[:, i]
                    i += 1
        return out

    def _conv2d(self, grid: torch.Tensor) -> torch.Tensor:
        # one depthwise k×k conv2d per temporal tap over every frame (channels-last), then
        # out[t] = bias + sum_dt y_dt[t + dt - p], taps that fall outside [0, T) skipped; the shifted
        # taps are added in place into the centre tap's output (convolutions do not need their output
        # for backward, so this is autograd-safe)
        b, t, h, w, c = grid.shape
        k = self.conv.kernel_size[0]
        p = k // 2
        frames = grid.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
        weight = self.conv.weight

        def tap(dt, bias=None):
            y = F.conv2d(frames, weight[:, :, dt], bias, padding=p, groups=c)
            return y.permute(0, 2, 3, 1).reshape(b, t, h, w, c)  # a view when the conv kept channels-last

        out = tap(p, self.conv.bias)
        for dt in range(k):
            s = dt - p
            if s == 0 or abs(s) >= t:
                continue
            y = tap(dt)
            if s > 0:
                out[:, : t - s] += y[:, s:]
            else:
                out[:, -s:] += y[:, : t + s]
        return out


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
        out = F.scaled_dot_product_attention(_heads(self.q(q), self.num_heads), k, v)
        return self.proj(_merge(out))


class GlobalUniBlock(nn.Module):
    """Global UniBlock after the DPE: q ← q + C-MHRA(LN(q), LN(tokens)); q ← q + MLP(LN(q)).

    The output projections start at zero, so a fresh block is the identity on its query.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.5,
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
        # official: DropPath over dim 0 of the (1, N, C) query = one draw for the whole batch.
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
