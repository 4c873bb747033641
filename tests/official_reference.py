"""An independent forward pass of the official UniFormerV2, written from its published layouts.

It runs directly on an official-layout state dict (names without the ``backbone.`` prefix) with the
official sequence-first token layout (1+HW, N·T, C), explicit softmax attention and Conv3d-based local
MHRA / DPE — none of the library's modules are used.  Eval mode only (BatchNorm uses running stats,
no dropout or drop path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _ln(x, sd, name, eps=1e-5):
    return F.layer_norm(x.float(), x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps).type_as(x)


def _quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _softmax_attention(q, k, v, heads):
    """q: (Lq, N, C), k/v: (Lk, N, C), sequence-first -> (Lq, N, C), explicit softmax."""
    lq, n, c = q.shape
    d = c // heads
    q = q.reshape(lq, n * heads, d).transpose(0, 1)
    k = k.reshape(k.shape[0], n * heads, d).transpose(0, 1)
    v = v.reshape(v.shape[0], n * heads, d).transpose(0, 1)
    w = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)
    return (w @ v).transpose(0, 1).reshape(lq, n, c)


def _mha(x_q, x_kv, sd, name, heads):
    c = x_q.shape[-1]
    w, b = sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"]
    q = F.linear(x_q, w[:c], b[:c])
    k = F.linear(x_kv, w[c:2 * c], b[c:2 * c])
    v = F.linear(x_kv, w[2 * c:], b[2 * c:])
    return F.linear(_softmax_attention(q, k, v, heads), sd[f"{name}.out_proj.weight"], sd[f"{name}.out_proj.bias"])


def _mlp(x, sd, name):
    x = _quick_gelu(F.linear(x, sd[f"{name}.c_fc.weight"], sd[f"{name}.c_fc.bias"]))
    return F.linear(x, sd[f"{name}.c_proj.weight"], sd[f"{name}.c_proj.bias"])


def local_mhra(x, sd, name):
    """x: (N, C, T, H, W) -> the official pos_embed Sequential (BN, 1x1x1, dw 3x1x1, 1x1x1)."""
    p = f"{name}.pos_embed"
    x = F.batch_norm(x, sd[f"{p}.0.running_mean"], sd[f"{p}.0.running_var"], sd[f"{p}.0.weight"],
                     sd[f"{p}.0.bias"], False, 0.0, 1e-5)
    x = F.conv3d(x, sd[f"{p}.1.weight"], sd[f"{p}.1.bias"])
    x = F.conv3d(x, sd[f"{p}.2.weight"], sd[f"{p}.2.bias"], padding=(1, 0, 0), groups=x.shape[1])
    return F.conv3d(x, sd[f"{p}.3.weight"], sd[f"{p}.3.bias"])


def _lmhra_residual(x, sd, name, n, t):
    l, nt, c = x.shape
    h = int((l - 1) ** 0.5)
    tmp = x[1:].reshape(h, h, n, t, c).permute(2, 4, 3, 0, 1)  # (N, C, T, H, W)
    tmp = local_mhra(tmp, sd, name)
    tmp = tmp.reshape(n, c, t, l - 1).permute(3, 0, 2, 1).reshape(l - 1, nt, c)
    return torch.cat([x[:1], x[1:] + tmp], dim=0)


def forward(sd: dict, video: torch.Tensor, *, patch_size: int, heads: int, return_list: list[int],
            temporal_downsample: bool) -> torch.Tensor:
    sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in sd.items()}
    stem = sd["conv1.weight"]
    kt = stem.shape[2]
    x = F.conv3d(video, stem, stride=(2 if temporal_downsample else 1, patch_size, patch_size),
                 padding=(kt // 2, 0, 0))
    n, c, t, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)
    cls = sd["class_embedding"] + torch.zeros(n * t, 1, c)
    x = torch.cat([cls, x], dim=1) + sd["positional_embedding"]
    x = _ln(x, sd, "ln_pre").permute(1, 0, 2)  # (L, N·T, C), sequence-first
    l = x.shape[0]
    depth = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    query = sd["transformer.temporal_cls_token"].repeat(1, n, 1)  # (1, N, C)
    for i in range(depth):
        b = f"transformer.resblocks.{i}"
        if f"{b}.lmhra1.pos_embed.1.weight" in sd:
            x = _lmhra_residual(x, sd, f"{b}.lmhra1", n, t)
        y = _ln(x, sd, f"{b}.ln_1")
        x = x + _mha(y, y, sd, f"{b}.attn", heads)
        if f"{b}.lmhra2.pos_embed.1.weight" in sd:
            x = _lmhra_residual(x, sd, f"{b}.lmhra2", n, t)
        x = x + _mlp(_ln(x, sd, f"{b}.ln_2"), sd, f"{b}.mlp")
        if i in return_list:
            j = return_list.index(i)
            tmp = x.clone().view(l, n, t, c)
            patches = tmp[1:].permute(1, 3, 2, 0).reshape(n, c, t, h, w)
            pos = F.conv3d(patches, sd[f"transformer.dpe.{j}.weight"], sd[f"transformer.dpe.{j}.bias"],
                           padding=1, groups=c)
            tmp[1:] = tmp[1:] + pos.view(n, c, t, l - 1).permute(3, 0, 2, 1)
            kv = tmp.permute(2, 0, 1, 3).flatten(0, 1)  # (T·L, N, C), T-major
            d = f"transformer.dec.{j}"
            qn = F.layer_norm(query, (c,), sd[f"{d}.ln_1.weight"], sd[f"{d}.ln_1.bias"])
            kvn = F.layer_norm(kv, (c,), sd[f"{d}.ln_3.weight"], sd[f"{d}.ln_3.bias"])
            query = query + _mha(qn, kvn, sd, f"{d}.attn", heads)
            query = query + _mlp(F.layer_norm(query, (c,), sd[f"{d}.ln_2.weight"], sd[f"{d}.ln_2.bias"]),
                                 sd, f"{d}.mlp")
    frame_cls = x.view(l, n, t, c)[0].mean(1)
    if "transformer.balance" in sd:
        wgt = torch.sigmoid(sd["transformer.balance"])
        feat = (1 - wgt) * query[0] + wgt * frame_cls
    else:
        feat = query[0]
    feat = F.layer_norm(feat, (c,), sd["transformer.proj.0.weight"], sd["transformer.proj.0.bias"])
    return F.linear(feat, sd["transformer.proj.2.weight"], sd["transformer.proj.2.bias"])
