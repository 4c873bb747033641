"""Image-ViT checkpoints in the wild -> CLIP visual-tower names (``conv1.weight``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N.{attn.in_proj_*, attn.out_proj, ln_1,
mlp.c_fc, mlp.c_proj, ln_2}``), the names the official UniFormerV2 backbone uses.

Formats, detected from the keys:
  clip      OpenAI CLIP (TorchScript archive or state dict) and open_clip: ``visual.*``
  clip_visual  an already extracted visual tower (the official ``vit_b16.pth``): ``conv1.weight`` …
  timm      timm ViT / CLIP-ViT: ``patch_embed.proj.weight``, ``blocks.N.attn.qkv`` …
  hf        Hugging Face ``CLIPVisionModel`` / ``CLIPModel``: ``vision_model.*`` with separate q/k/v
"""
from __future__ import annotations

import re

import torch

from ..errors import CheckpointError


def detect_format(sd: dict) -> str:
    keys = set(sd)
    if any(k.startswith("vision_model.") for k in keys):
        return "hf"
    if "visual.conv1.weight" in keys:
        return "clip"
    if "conv1.weight" in keys and any(k.startswith("transformer.resblocks.") for k in keys):
        return "clip_visual"
    if "patch_embed.proj.weight" in keys:
        return "timm"
    raise CheckpointError("not a recognised image-ViT checkpoint (expected OpenAI CLIP/open_clip `visual.*`, "
                          "timm `patch_embed.proj.weight`/`blocks.N.*`, or Hugging Face `vision_model.*` keys)")


def to_clip_visual(sd: dict) -> tuple[dict, str]:
    """(state dict in CLIP visual names, detected format). Heads/post-norms are dropped here."""
    fmt = detect_format(sd)
    if fmt == "clip":
        out = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    elif fmt == "clip_visual":
        out = dict(sd)
    elif fmt == "timm":
        out = _from_timm(sd)
    else:
        out = _from_hf(sd)
    dropped = ("proj", "ln_post.weight", "ln_post.bias")
    return {k: v for k, v in out.items() if k not in dropped}, fmt


_TIMM_BLOCK = {"norm1": "ln_1", "norm2": "ln_2", "attn.qkv": "attn.in_proj", "attn.proj": "attn.out_proj",
               "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _from_timm(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if k == "patch_embed.proj.weight":
            out["conv1.weight"] = v
        elif k == "cls_token":
            out["class_embedding"] = v.reshape(-1)
        elif k == "pos_embed":
            out["positional_embedding"] = v.reshape(-1, v.shape[-1])
        elif k.startswith("norm_pre."):
            out["ln_pre." + k.split(".", 1)[1]] = v
        elif (m := re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", k)) and m.group(2) in _TIMM_BLOCK:
            i, part, kind = m.groups()
            name = _TIMM_BLOCK[part]
            if name == "attn.in_proj":
                out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = v
            else:
                out[f"transformer.resblocks.{i}.{name}.{kind}"] = v
    return out


_HF_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _from_hf(sd: dict) -> dict:
    out, qkv = {}, {}
    for k, v in sd.items():
        if not k.startswith("vision_model."):
            continue
        k = k[len("vision_model."):]
        if k == "embeddings.patch_embedding.weight":
            out["conv1.weight"] = v
        elif k == "embeddings.class_embedding":
            out["class_embedding"] = v
        elif k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("pre_layrnorm."):
            out["ln_pre." + k.split(".", 1)[1]] = v
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", k):
            i, which, kind = m.groups()
            qkv.setdefault((i, kind), {})[which] = v
        elif (m := re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", k)) and m.group(2) in _HF_LAYER:
            i, part, kind = m.groups()
            out[f"transformer.resblocks.{i}.{_HF_LAYER[part]}.{kind}"] = v
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"layer {i}: incomplete q/k/v projections in the Hugging Face checkpoint")
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def inflate_patch_embed(w2d: torch.Tensor, time: int) -> torch.Tensor:
    """(C, 3, p, p) -> (C, 3, time, p, p) with the 2D kernel in the middle slice (official ``center=True``)."""
    if time == 1:
        return w2d.unsqueeze(2)
    w = w2d.new_zeros(w2d.shape[0], w2d.shape[1], time, *w2d.shape[2:])
    w[:, :, time // 2] = w2d
    return w


def resize_pos_embed(pos: torch.Tensor, tokens: int) -> torch.Tensor:
    """(1+g², C) -> (tokens, C): bicubic interpolation of the spatial grid, class position kept."""
    if pos.shape[0] == tokens:
        return pos
    old, new = int(round((pos.shape[0] - 1) ** 0.5)), int(round((tokens - 1) ** 0.5))
    grid = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(new * new, -1).to(pos.dtype)])
