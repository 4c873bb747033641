"""UniFormerV2: a CLIP-style image ViT armed with local and global UniBlocks for video.

    video (B, 3, T, H, W)
      → 3D-conv stem (kernel 1×p×p, or 3×p×p with temporal stride 2)      → (B, C, T', h, w)
      → per-frame tokens with class token + spatial position embedding   → x: (B·T', 1+h·w, C)
      → N Local UniBlocks ([local MHRA] + per-frame MHSA + MLP)
        after each layer in ``global_layers``: DPE on the patch grid, then a Global UniBlock in which
        the learnable video query cross-attends to all T'·(1+h·w) tokens (multi-stage fusion)
      → fuse the video query with the time-averaged last-layer frame class tokens:
        feature = (1 − w)·query + w·mean_t(cls_t), w = sigmoid(balance) per channel
      → head: LN → dropout → linear.

The fusion variants ("sequential" is the paper's final design and the only one the official code has):
  sequential      F_i = G_i(F_{i-1}, X_i), F_0 = q: one query passes through the global blocks in turn.
  parallel        F_i = G_i(q, X_i) for every stage from the same learnable q; the stage outputs are
                  concatenated and projected back to C by a linear layer (zero-initialised).
  hierarchical_kv F_i = G_i(q_i, [F_{i-1}; X_i]): each stage has its own query q_i and sees the previous
                  stage's output as one more key/value token.
  hierarchical_q  Q_i = [F_{i-1}; q_i]: the previous stage's output tokens are queries again, next to a new
                  query q_i; the final stage's tokens are averaged into the video feature.

A model also declares what it needs from the outside world: ``labels`` (class names of the head, or None),
``preset`` (the recipe it was built from, or None) and ``data_config`` (frames, sizes, normalisation, test
views: a :class:`~uniformerv2.data.config.DataConfig`).  ``uniformerv2.factory`` builds, loads and saves
models; ``uniformerv2.accel.optimize`` swaps in the speed variants of its blocks.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.config import DataConfig
from ..errors import UserError
from ..weights.format import write_model_dir
from .config import ModelConfig
from .layers import DPE, GlobalUniBlock, Head, LocalUniBlock


def _linspace(end: float, n: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``end`` over ``n`` blocks."""
    return [end * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class UniFormerV2(nn.Module):
    def __init__(self, cfg: ModelConfig, *, labels: list[str] | None = None, preset: str | None = None,
                 data_config: DataConfig | None = None):
        super().__init__()
        self.cfg = cfg
        c = cfg.embed_dim
        kt = 3 if cfg.temporal_downsample else 1
        self.stem = nn.Conv3d(3, c, (kt, cfg.patch_size, cfg.patch_size),
                              stride=(2 if cfg.temporal_downsample else 1, cfg.patch_size, cfg.patch_size),
                              padding=(kt // 2, 0, 0), bias=False)
        scale = c**-0.5
        self.cls_token = nn.Parameter(scale * torch.randn(c))
        self.pos_embed = nn.Parameter(scale * torch.randn(cfg.tokens_per_frame, c))
        self.norm_pre = nn.LayerNorm(c)
        dpr = _linspace(cfg.drop_path_rate, cfg.depth)
        self.blocks = nn.ModuleList(
            LocalUniBlock(c, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, drop_path=dpr[i], local_mhra=cfg.local_mhra,
                          reduction=cfg.local_mhra_reduction, drop_path_mode=cfg.drop_path_mode)
            for i in range(cfg.depth))
        n = len(cfg.global_layers)
        gdpr = _linspace(cfg.global_drop_path_rate, n)
        self.dpe = nn.ModuleList(DPE(c) for _ in range(n))
        self.global_blocks = nn.ModuleList(
            GlobalUniBlock(c, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.global_mlp_dropout,
                           drop_path=gdpr[j], drop_path_mode=cfg.drop_path_mode)
            for j in range(n))
        # The learnable video query q (one per stage for the hierarchical fusions), zero-initialised.
        nq = n if cfg.fusion.startswith("hierarchical") else 1
        self.query = nn.Parameter(torch.zeros(nq, 1, c))
        if cfg.fusion == "parallel":
            self.fuse_proj = nn.Linear(n * c, c)
            nn.init.zeros_(self.fuse_proj.weight)
            nn.init.zeros_(self.fuse_proj.bias)
        self.balance = None if cfg.frozen_backbone else nn.Parameter(torch.zeros(c))
        self.head = Head(c, cfg.num_classes, cfg.head_dropout)
        self._stage_of = {layer: j for j, layer in enumerate(cfg.global_layers)}
        if cfg.frozen_backbone:
            for p in self.backbone_parameters():
                p.requires_grad_(False)
        # What the model declares about itself (saved in config.json beside the architecture).
        if labels is not None and len(labels) != cfg.num_classes:
            raise UserError(f"{len(labels)} labels given for a {cfg.num_classes}-class model")
        self.labels = list(labels) if labels is not None else None
        self.preset = preset
        self.data_config = data_config or DataConfig(num_frames=cfg.num_frames, crop_size=cfg.img_size)
        self.load_report = None  # set by the factory when weights were loaded into the model

    # ------------------------------------------------------------------ helpers
    @property
    def num_frames(self) -> int:
        return self.cfg.num_frames

    @property
    def img_size(self) -> int:
        return self.cfg.img_size

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def backbone_parameters(self):
        """The image ViT's parameters (stem, embeddings, ``norm_pre``, blocks incl. local MHRA)."""
        for name, p in self.named_parameters():
            if name.split(".")[0] in ("stem", "cls_token", "pos_embed", "norm_pre", "blocks"):
                yield p

    def reset_classifier(self, num_classes: int, labels: list[str] | None = None):
        """A new, freshly initialised head for ``num_classes`` classes (named ``labels``)."""
        if labels is not None and len(labels) != num_classes:
            raise UserError(f"{len(labels)} labels given for a {num_classes}-class head")
        self.cfg.num_classes = num_classes
        self.head.fc = nn.Linear(self.cfg.embed_dim, num_classes).to(self.head.norm.weight)
        self.labels = list(labels) if labels is not None else None

    def check_input(self, x: torch.Tensor):
        cfg = self.cfg
        if x.dim() != 5 or x.shape[1] != 3:
            raise UserError(f"expected a video batch (B, 3, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] != cfg.num_frames:
            raise UserError(f"model was built for {cfg.num_frames} frames, got {x.shape[2]} "
                            f"(build it with num_frames={x.shape[2]}; no weight depends on T)")
        if x.shape[3] != cfg.img_size or x.shape[4] != cfg.img_size:
            raise UserError(f"model was built for {cfg.img_size}x{cfg.img_size} input, got "
                            f"{x.shape[3]}x{x.shape[4]} (resize/crop, or build with img_size=...)")

    # ------------------------------------------------------------------ forward
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> tokens x: (B·T', 1+h·w, C), frame index fastest, class token first."""
        x = self.stem(video)  # (B, C, T', h, w)
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        cls = self.cls_token.to(x.dtype).expand(b * t, 1, c)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        return self.norm_pre(x)

    def fuse_stage(self, state: torch.Tensor | None, stage: int, tokens: torch.Tensor) -> torch.Tensor:
        """One step of multi-stage fusion: the state after global block ``stage`` reads the DPE'd layer
        ``tokens`` (B, T'·L, C) (see the module docstring)."""
        blk, fusion, b = self.global_blocks[stage], self.cfg.fusion, tokens.shape[0]
        if fusion == "sequential":
            q = self.query[0].expand(b, -1, -1) if state is None else state
            return blk(q, tokens)
        if fusion == "parallel":
            out = blk(self.query[0].expand(b, -1, -1), tokens)
            return out if state is None else torch.cat([state, out], dim=1)
        q = self.query[stage].expand(b, -1, -1)
        if fusion == "hierarchical_kv":
            return blk(q, tokens if state is None else torch.cat([state, tokens], dim=1))
        return blk(q if state is None else torch.cat([state, q], dim=1), tokens)  # hierarchical_q

    def video_token(self, state: torch.Tensor | None, b: int) -> torch.Tensor:
        """The fused state of the global blocks -> the video token (B, C)."""
        if state is None:  # no global blocks: the query alone
            return self.query[0, 0].expand(b, -1)
        if self.cfg.fusion == "parallel":
            return self.query[0, 0] + self.fuse_proj(state.flatten(1))
        return state.mean(dim=1)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised video -> fused pre-head feature (B, C)."""
        self.check_input(video)
        b, t = video.shape[0], self.cfg.time_steps
        x = self.embed(video)
        state = None
        for i, blk in enumerate(self.blocks):
            x = blk(x, t)
            stage = self._stage_of.get(i)
            if stage is not None:
                state = self.fuse_stage(state, stage, self.dpe[stage](x, t))
        video_token = self.video_token(state, b)
        if self.balance is None:  # frozen backbone: the query alone
            return video_token
        w = torch.sigmoid(self.balance)
        frame_cls = x.view(b, t, -1, x.shape[-1])[:, :, 0].mean(dim=1)
        return (1 - w) * video_token + w * frame_cls

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised video -> logits (B, num_classes)."""
        return self.head(self.forward_features(video))

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict:
        """What ``config.json`` holds besides the weights: architecture, preset, labels, data config."""
        return {"model": self.cfg.to_dict(), "preset": self.preset, "labels": self.labels,
                "data": self.data_config.to_dict()}

    def save_pretrained(self, directory, **metadata):
        """Write a model directory: ``config.json`` (:meth:`describe` + ``metadata``) + ``model.safetensors``."""
        return write_model_dir(directory, {**self.describe(), **metadata}, self.state_dict())
