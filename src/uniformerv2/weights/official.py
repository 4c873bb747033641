"""The official UniFormerV2 checkpoint layout (``backbone.``-prefixed, CLIP/SlowFast names) ↔ ours.

Official names follow OpenAI CLIP's visual tower (``conv1``, ``class_embedding``, ``transformer.resblocks.N``
with ``attn.in_proj_weight``…) plus the UniFormerV2 additions (``lmhra1/2.pos_embed.{0,1,2,3}``,
``transformer.dpe.J``, ``transformer.dec.J``, ``temporal_cls_token``, ``balance``, ``proj.{0,2}``).
The mapping is a bijection on names; tensors are only reshaped (1×1×1 / t×1×1 conv kernels ↔ linear /
(C', t) weights) or split/concatenated (the global blocks' fused in_proj ↔ our q and kv), so
official → ours → official reproduces every tensor exactly.
"""
from __future__ import annotations

import re

import torch

from ..errors import UserError

# (official pattern, our pattern); "#" stands for a block index.  Backbone part = CLIP visual names.
_RENAMES = [
    ("conv1.weight", "stem.weight"),
    ("class_embedding", "cls_token"),
    ("positional_embedding", "pos_embed"),
    ("ln_pre.weight", "norm_pre.weight"),
    ("ln_pre.bias", "norm_pre.bias"),
    ("transformer.resblocks.#.attn.in_proj_weight", "blocks.#.attn.qkv.weight"),
    ("transformer.resblocks.#.attn.in_proj_bias", "blocks.#.attn.qkv.bias"),
    ("transformer.resblocks.#.attn.out_proj.weight", "blocks.#.attn.proj.weight"),
    ("transformer.resblocks.#.attn.out_proj.bias", "blocks.#.attn.proj.bias"),
    ("transformer.resblocks.#.ln_1.weight", "blocks.#.norm1.weight"),
    ("transformer.resblocks.#.ln_1.bias", "blocks.#.norm1.bias"),
    ("transformer.resblocks.#.ln_2.weight", "blocks.#.norm2.weight"),
    ("transformer.resblocks.#.ln_2.bias", "blocks.#.norm2.bias"),
    ("transformer.resblocks.#.mlp.c_fc.weight", "blocks.#.mlp.fc1.weight"),
    ("transformer.resblocks.#.mlp.c_fc.bias", "blocks.#.mlp.fc1.bias"),
    ("transformer.resblocks.#.mlp.c_proj.weight", "blocks.#.mlp.fc2.weight"),
    ("transformer.resblocks.#.mlp.c_proj.bias", "blocks.#.mlp.fc2.bias"),
]
for _m in ("lmhra1", "lmhra2"):
    for _s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        _RENAMES.append((f"transformer.resblocks.#.{_m}.pos_embed.0.{_s}", f"blocks.#.{_m}.norm.{_s}"))
    for _i, _ours in (("1", "down"), ("2", "dwconv"), ("3", "up")):
        for _s in ("weight", "bias"):
            _RENAMES.append((f"transformer.resblocks.#.{_m}.pos_embed.{_i}.{_s}", f"blocks.#.{_m}.{_ours}.{_s}"))
_RENAMES += [
    ("transformer.temporal_cls_token", "query"),
    ("transformer.dpe.#.weight", "dpe.#.conv.weight"),
    ("transformer.dpe.#.bias", "dpe.#.conv.bias"),
    ("transformer.dec.#.attn.out_proj.weight", "global_blocks.#.attn.proj.weight"),
    ("transformer.dec.#.attn.out_proj.bias", "global_blocks.#.attn.proj.bias"),
    ("transformer.dec.#.ln_1.weight", "global_blocks.#.norm_q.weight"),
    ("transformer.dec.#.ln_1.bias", "global_blocks.#.norm_q.bias"),
    ("transformer.dec.#.ln_3.weight", "global_blocks.#.norm_kv.weight"),
    ("transformer.dec.#.ln_3.bias", "global_blocks.#.norm_kv.bias"),
    ("transformer.dec.#.ln_2.weight", "global_blocks.#.norm2.weight"),
    ("transformer.dec.#.ln_2.bias", "global_blocks.#.norm2.bias"),
    ("transformer.dec.#.mlp.c_fc.weight", "global_blocks.#.mlp.fc1.weight"),
    ("transformer.dec.#.mlp.c_fc.bias", "global_blocks.#.mlp.fc1.bias"),
    ("transformer.dec.#.mlp.c_proj.weight", "global_blocks.#.mlp.fc2.weight"),
    ("transformer.dec.#.mlp.c_proj.bias", "global_blocks.#.mlp.fc2.bias"),
    ("transformer.proj.0.weight", "head.norm.weight"),
    ("transformer.proj.0.bias", "head.norm.bias"),
    ("transformer.proj.2.weight", "head.fc.weight"),
    ("transformer.proj.2.bias", "head.fc.bias"),
    ("transformer.balance", "balance"),
]
_NON_OFFICIAL_LOCAL = re.compile(r"blocks\.\d+\.lmhra\d\.(attn|conv)\.")  # temporal MHSA / ST-Adapter tensors
_DEC_IN_PROJ = re.compile(r"transformer\.dec\.(\d+)\.attn\.in_proj_(weight|bias)$")
_OUR_Q_KV = re.compile(r"global_blocks\.(\d+)\.attn\.(q|kv)\.(weight|bias)$")


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace("\\#", r"(\d+)") + "$")


_TO_OURS = [(_compile(o), u) for o, u in _RENAMES]
_TO_OFFICIAL = [(_compile(u), o) for o, u in _RENAMES]


def _rename(name: str, table) -> str | None:
    for pattern, target in table:
        m = pattern.match(name)
        if m:
            return target.replace("#", m.group(1)) if m.groups() else target
    return None


def _to_ours_tensor(ours: str, t: torch.Tensor) -> torch.Tensor:
    if re.search(r"lmhra\d\.(down|up)\.weight$", ours):
        return t.reshape(t.shape[0], t.shape[1])  # [C', C, 1, 1, 1] -> [C', C]
    if re.search(r"lmhra\d\.dwconv\.weight$", ours):
        return t.reshape(t.shape[0], t.shape[2])  # [C', 1, k, 1, 1] -> [C', k]
    if ours == "query" and t.dim() == 3:
        return t.reshape(1, 1, -1)
    return t


def _to_official_tensor(ours: str, t: torch.Tensor) -> torch.Tensor:
    if re.search(r"lmhra\d\.(down|up)\.weight$", ours):
        return t.reshape(*t.shape, 1, 1, 1)
    if re.search(r"lmhra\d\.dwconv\.weight$", ours):
        return t.reshape(t.shape[0], 1, t.shape[1], 1, 1)
    return t


def strip_backbone_prefix(sd: dict) -> dict:
    return {(k[len("backbone."):] if k.startswith("backbone.") else k): v for k, v in sd.items()}


def is_official(sd: dict) -> bool:
    keys = strip_backbone_prefix(sd)
    return "transformer.temporal_cls_token" in keys or any(k.startswith("transformer.dec.") for k in keys)


def official_to_ours(sd: dict) -> tuple[dict, list[str]]:
    """Official (or CLIP-visual) names -> ours. Returns (state dict, names that have no counterpart)."""
    out, unknown = {}, []
    for name, t in strip_backbone_prefix(sd).items():
        m = _DEC_IN_PROJ.match(name)
        if m:
            j, kind = m.groups()
            c = t.shape[0] // 3
            out[f"global_blocks.{j}.attn.q.{kind}"] = t[:c]
            out[f"global_blocks.{j}.attn.kv.{kind}"] = t[c:]
            continue
        ours = _rename(name, _TO_OURS)
        if ours is None:
            unknown.append(name)
        else:
            out[ours] = _to_ours_tensor(ours, t)
    return out, unknown


def ours_to_official(sd: dict, prefix: str = "backbone.") -> dict:
    """Our names -> the official layout (names, shapes, ``backbone.`` prefix), in the official order."""
    out, pending = {}, {}
    if "query" in sd and sd["query"].shape[0] != 1:
        raise UserError("the official layout has one video query: hierarchical fusions have no official form")
    if any(_NON_OFFICIAL_LOCAL.match(k) for k in sd):
        raise UserError("the official code has only the local MHRA as local operator: a model with "
                        "local_op='temporal_mhsa' or 'st_adapter' has no official form")
    if any(k.startswith("global_blocks.") for k in sd) and not any(k.startswith("dpe.") for k in sd):
        raise UserError("the official code always has a DPE before each global block: a model with dpe=False "
                        "has no official form")
    for name, t in sd.items():
        m = _OUR_Q_KV.match(name)
        if m:
            j, part, kind = m.groups()
            pending.setdefault((j, kind), {})[part] = t
            if len(pending[(j, kind)]) == 2:
                p = pending.pop((j, kind))
                out[f"transformer.dec.{j}.attn.in_proj_{kind}"] = torch.cat([p["q"], p["kv"]], 0)
            continue
        official = _rename(name, _TO_OFFICIAL)
        if official is None:
            raise UserError(f"{name} has no counterpart in the official layout "
                            "(only the sequential fusion exists in the official code)")
        out[official] = _to_official_tensor(name, t)
    if pending:
        raise ValueError(f"incomplete global-block projections: {sorted(pending)}")
    return {prefix + k: v for k, v in sorted(out.items(), key=lambda kv: _official_order(kv[0]))}


def _official_order(name: str):
    """Sort key giving the official module order (stem, blocks, query, dpe, dec, proj, balance)."""
    top = ["conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer.resblocks",
           "transformer.temporal_cls_token", "transformer.dpe", "transformer.dec", "transformer.proj",
           "transformer.balance"]
    rank = next(i for i, p in reversed(list(enumerate(top))) if name.startswith(p))
    nums = [int(n) for n in re.findall(r"\.(\d+)\.", name)[:1]]
    return (rank, nums)
