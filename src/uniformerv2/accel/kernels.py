"""Triton kernels of ``TritonDPE`` (``optimize(model, ..., dpe="triton")``): DPE and residual add in one pass.

The DPE is a depthwise 3×3×3 convolution over the patch grid whose output is added to the patch tokens.
cuDNN runs that convolution far from the memory bound on bf16 activations; this kernel reads the token
tensor once (neighbours come from cache) and writes the layer's global tokens once:

    x   : (B·T, L, C) contiguous, L = 1 + H·W (the model's token layout, see model/layers.py)
    out : (B·T, L, C), out[:, 0] = x[:, 0] (class tokens), out[:, 1:] = x[:, 1:] + dwconv3d(x[:, 1:]) + bias

One program computes one grid row (b, t, h) — W tokens — for a block of channels, accumulating the k³
taps in fp32 with zero padding at the clip's borders in T, H and W.

Backward (training): the input gradient is the same kernel run on the output gradient with the kernel
flipped in T, H and W and no bias; the weight gradient is a second kernel (per frame and tap, a sum of
grad · shifted input over the frame), then one sum over frames.
Triton is optional and imported only when this variant runs; ``optimize`` installs it on CUDA only.
``TRITON_INTERPRET=1`` runs the kernel on CPU tensors (used by the tests).
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # optional: CUDA installs of PyTorch ship it
    triton = None


def triton_usable(x: torch.Tensor) -> bool:
    if triton is None:
        return False
    return x.is_cuda or (os.environ.get("TRITON_INTERPRET") == "1" and x.device.type == "cpu")


if triton is not None:
    @triton.jit
    def _dpe_tokens_kernel(x_ptr, w_ptr, b_ptr, out_ptr, T, L, H, W, C,
                           K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_W: tl.constexpr,
                           BLOCK_C: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)  # over B·T·H
        cb = tl.program_id(1)
        h = row % H
        bt = row // H  # frame index in B·T
        t = bt % T
        offs_w = tl.arange(0, BLOCK_W)
        offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_w = offs_w < W
        mask_c = offs_c < C
        P: tl.constexpr = K // 2
        acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
        for dt in tl.static_range(K):
            tt = t + dt - P
            ok_t = (tt >= 0) & (tt < T)
            for dh in tl.static_range(K):
                hh = h + dh - P
                ok = ok_t & (hh >= 0) & (hh < H)
                base = ((bt + dt - P) * L + 1 + hh * W) * C
                for dw in tl.static_range(K):
                    ww = offs_w + dw - P
                    m = (ok & (ww >= 0) & (ww < W) & mask_w)[:, None] & mask_c[None, :]
                    v = tl.load(x_ptr + base + ww[:, None] * C + offs_c[None, :], mask=m, other=0.0)
                    wk = tl.load(w_ptr + offs_c * (K * K * K) + ((dt * K + dh) * K + dw), mask=mask_c, other=0.0)
                    acc += v.to(tl.float32) * wk.to(tl.float32)[None, :]
        if HAS_BIAS:
            acc += tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
        own = (bt * L + 1 + h * W) * C + offs_w[:, None] * C + offs_c[None, :]
        mo = mask_w[:, None] & mask_c[None, :]
        acc += tl.load(x_ptr + own, mask=mo, other=0.0).to(tl.float32)
        tl.store(out_ptr + own, acc.to(out_ptr.dtype.element_ty), mask=mo)
        if h == 0:  # the frame's class token passes through
            cls = bt * L * C + offs_c
            tl.store(out_ptr + cls, tl.load(x_ptr + cls, mask=mask_c, other=0.0), mask=mask_c)


    @triton.jit
    def _dpe_wgrad_kernel(x_ptr, g_ptr, part_ptr, T, L, H: tl.constexpr, W, C,
                          K: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
        # one tap, one frame, one channel block: sum over the frame's H·W positions of grad · shifted input
        tap = tl.program_id(0)  # fastest: the k³ programs of one frame run together and share its cache lines
        bt = tl.program_id(1).to(tl.int64)
        cb = tl.program_id(2)
        P: tl.constexpr = K // 2
        dt = tap // (K * K) - P
        dh = (tap // K) % K - P
        dw = tap % K - P
        t = bt % T
        ok_t = (t + dt >= 0) & (t + dt < T)
        offs_w = tl.arange(0, BLOCK_W)
        offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_w = offs_w < W
        mask_c = offs_c < C
        ww = offs_w + dw
        m_src = (ok_t & (ww >= 0) & (ww < W) & mask_w)[:, None] & mask_c[None, :]
        m_own = mask_w[:, None] & mask_c[None, :]
        acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for h in range(0, H):
            hh = h + dh
            v = tl.load(x_ptr + ((bt + dt) * L + 1 + hh * W) * C + ww[:, None] * C + offs_c[None, :],
                        mask=m_src & (hh >= 0) & (hh < H), other=0.0)
            g = tl.load(g_ptr + (bt * L + 1 + h * W) * C + offs_w[:, None] * C + offs_c[None, :], mask=m_own,
                        other=0.0)
            acc += tl.sum(v.to(tl.float32) * g.to(tl.float32), axis=0)
        tl.store(part_ptr + (bt * (K * K * K) + tap) * C + offs_c, acc, mask=mask_c)


def _block_c(c: int) -> int:
    return 128 if c >= 128 else triton.next_power_of_2(c)


def _launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, t: int, g: int) -> torch.Tensor:
    bt, l, c = x.shape
    k = weight.shape[-1]
    x = x.contiguous()
    w = weight.reshape(c, k * k * k).contiguous()
    out = torch.empty_like(x)
    block_c = _block_c(c)
    grid = (bt * g, triton.cdiv(c, block_c))
    _dpe_tokens_kernel[grid](x, w, w if bias is None else bias, out, t, l, g, g, c, K=k, HAS_BIAS=bias is not None,
                             BLOCK_W=triton.next_power_of_2(g), BLOCK_C=block_c, num_warps=4)
    return out


def _weight_grads(x: torch.Tensor, grad: torch.Tensor, k: int, t: int, g: int):
    """dL/dweight (C, 1, k, k, k) and dL/dbias (C,) of the depthwise convolution, in fp32: per-frame
    partial sums from the kernel, then one reduction over frames."""
    bt, l, c = x.shape
    part = torch.empty(bt, k ** 3, c, device=x.device, dtype=torch.float32)
    block_c = _block_c(c)
    _dpe_wgrad_kernel[(k ** 3, bt, triton.cdiv(c, block_c))](
        x, grad, part, t, l, g, g, c, K=k, BLOCK_W=triton.next_power_of_2(g), BLOCK_C=block_c, num_warps=4)
    grad_w = part.sum(0).t().reshape(c, 1, k, k, k)
    return grad_w, grad[:, 1:].sum((0, 1), dtype=torch.float32)


class DPETokens(torch.autograd.Function):
    """out = tokens with the DPE added to the patch tokens (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, t: int, g: int):
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.t, ctx.g = t, g
        return _launch(x, weight, bias, t, g)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        t, g, k = ctx.t, ctx.g, weight.shape[-1]
        grad = grad.contiguous()
        gx = _launch(grad, weight.flip((2, 3, 4)), None, t, g) if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gw, gb = _weight_grads(x, grad, k, t, g)
            gw, gb = gw.to(weight.dtype), gb.to(weight.dtype)
        return gx, gw, gb, None, None


def dpe_tokens(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, t: int, g: int) -> torch.Tensor:
    """(B·T, L, C) tokens -> the same with the DPE (``weight`` (C, 1, k, k, k), ``bias`` (C,)) added."""
    return DPETokens.apply(x, weight, bias, t, g)
