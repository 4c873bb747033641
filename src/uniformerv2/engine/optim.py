"""AdamW with the official parameter groups, plus optional layer-wise LR decay.

Official: weight decay 0.05 on every parameter with ``ndim >= 2`` (conv/linear weights, positional
embedding, query), none on 1-D parameters (biases, norms, class token, ``balance``). Layer-wise LR decay is
not in the official recipe; with ``layer_decay=d`` the LR of layer ``i`` (0 = embeddings, depth+1 = head and
fusion) is multiplied by ``d ** (depth + 1 - i)``. Global UniBlocks and DPEs take the layer of the backbone
block they follow.
"""
from __future__ import annotations

import torch


def layer_id(name: str, depth: int, global_layers: list[int]) -> int:
    top = name.split(".")[0]
    if top in ("stem", "cls_token", "pos_embed", "norm_pre"):
        return 0
    if top == "blocks":
        return int(name.split(".")[1]) + 1
    if top in ("dpe", "global_blocks"):
        return global_layers[int(name.split(".")[1])] + 1
    return depth + 1  # query, balance, fuse_proj, head


def param_groups(model, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict]:
    """Parameter groups (trainable parameters only) with ``weight_decay`` and ``lr_scale`` set."""
    cfg = model.cfg
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = 0.0 if p.ndim <= 1 else weight_decay
        lid = layer_id(name, cfg.depth, cfg.global_layers) if layer_decay else 0
        scale = float(layer_decay) ** (cfg.depth + 1 - lid) if layer_decay else 1.0
        key = (decay, lid)
        g = groups.setdefault(key, {"params": [], "names": [], "weight_decay": decay, "lr_scale": scale})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model, lr: float, weight_decay: float = 0.05, betas=(0.9, 0.999), eps: float = 1e-8,
                    layer_decay: float | None = None) -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


class EMA:
    """Exponential moving average of the model's floating-point state (parameters and buffers)."""

    def __init__(self, model, decay: float):
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach(), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
