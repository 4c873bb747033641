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
"""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ..errors import UserError
from .layers import CHECKPOINT_POLICIES, DPE, DPE_IMPLS, GlobalUniBlock, Head, LocalUniBlock

FUSIONS = ("sequential", "parallel", "hierarchical_q", "hierarchical_kv")
LOCAL_MHRA = ("none", "single", "double")


@dataclass
class ModelConfig:
    """Everything that determines the architecture (and nothing else). Saved as ``config.json``."""

    arch: str = "uniformerv2_b16"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    img_size: int = 224
    mlp_ratio: float = 4.0
    num_classes: int = 400
    num_frames: int = 8
    temporal_downsample: bool = False
    local_mhra: str = "none"
    local_mhra_reduction: float = 1.5
    global_layers: list[int] = field(default_factory=lambda: [8, 9, 10, 11])
    fusion: str = "sequential"
    frozen_backbone: bool = False
    drop_path_rate: float = 0.0
    global_drop_path_rate: float = 0.0
    global_mlp_dropout: float = 0.5
    head_dropout: float = 0.5
    drop_path_mode: str = "official"
    grad_checkpointing: bool | int = False

    def __post_init__(self):
        self.global_layers = [int(i) for i in self.global_layers]
        if self.local_mhra not in LOCAL_MHRA:
            raise UserError(f"local_mhra must be one of {LOCAL_MHRA}, got {self.local_mhra!r}")
        if self.fusion not in FUSIONS:
            raise UserError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.drop_path_mode not in ("official", "sample"):
            raise UserError(f"drop_path_mode must be 'official' or 'sample', got {self.drop_path_mode!r}")
        bad = [i for i in self.global_layers if not 0 <= i < self.depth]
        if bad or len(set(self.global_layers)) != len(self.global_layers):
            raise UserError(f"global_layers must be distinct block indices in [0, {self.depth}), got {self.global_layers}")
        if self.img_size % self.patch_size:
            raise UserError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.temporal_downsample and self.num_frames % 2:
            raise UserError(f"temporal_downsample needs an even num_frames, got {self.num_frames}")
        if self.embed_dim % self.num_heads:
            raise UserError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def tokens_per_frame(self) -> int:
        return (self.img_size // self.patch_size) ** 2 + 1

    @property
    def time_steps(self) -> int:
        """Frames inside the network (T', after the stem)."""
        return self.num_frames // 2 if self.temporal_downsample else self.num_frames

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown model option(s): {', '.join(unknown)}")
        return cls(**d)


def _linspace(end: float, n: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``end`` over ``n`` blocks."""
    return [end * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class UniFormerV2(nn.Module):
    def __init__(self, cfg: ModelConfig):
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
            LocalUniBlock(c, cfg.num_heads, cfg.mlp_ratio, dpr[i], cfg.local_mhra, cfg.local_mhra_reduction,
                          cfg.drop_path_mode)
            for i in range(cfg.depth))
        n = len(cfg.global_layers)
        gdpr = _linspace(cfg.global_drop_path_rate, n)
        self.dpe = nn.ModuleList(DPE(c) for _ in range(n))
        self.global_blocks = nn.ModuleList(
            GlobalUniBlock(c, cfg.num_heads, cfg.mlp_ratio, cfg.global_mlp_dropout, gdpr[j], cfg.drop_path_mode)
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
        self.set_grad_checkpointing(cfg.grad_checkpointing)
        if cfg.frozen_backbone:
            for p in self.backbone_parameters():
                p.requires_grad_(False)

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

    def set_grad_checkpointing(self, enable: bool | int = True, policy: str | None = None):
        """Activation checkpointing in the first ``enable`` blocks (True = all).

        policy: "branches" (default: attention and MLP branches are recomputed, the layer's two residual
        inputs are stored), "block" (the whole layer incl. local MHRA is recomputed from its input) or
        "save_attention" (as "branches", but the attention kernel's output is kept).
        """
        if policy is not None and policy not in CHECKPOINT_POLICIES:
            raise UserError(f"checkpoint policy must be one of {CHECKPOINT_POLICIES}, got {policy!r}")
        count = len(self.blocks) if enable is True else int(enable or 0)
        for i, blk in enumerate(self.blocks):
            blk.grad_checkpointing = i < count
            if policy is not None:
                blk.checkpoint_policy = policy

    def set_dpe_impl(self, impl: str):
        """How the DPE is computed: one of ``DPE_IMPLS`` (same numbers up to float rounding)."""
        if impl not in DPE_IMPLS:
            raise UserError(f"DPE impl must be one of {DPE_IMPLS}, got {impl!r}")
        if impl == "triton" and importlib.util.find_spec("triton") is None:
            raise UserError("DPE impl 'triton' needs Triton (CUDA builds of PyTorch install it)")
        for m in self.dpe:
            m.impl = impl
        return self

    # Eager inference without autograd/autocast updates the residual stream in place (see layers.py).
    eager_fast_path = True

    def _use_fast_path(self, x: torch.Tensor) -> bool:
        return (self.eager_fast_path and not self.training and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling()
                and not torch.jit.is_tracing() and not torch.jit.is_scripting())

    def reset_classifier(self, num_classes: int):
        self.cfg.num_classes = num_classes
        self.head.fc = nn.Linear(self.cfg.embed_dim, num_classes).to(self.head.norm.weight)

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
        if self._use_fast_path(x):  # write class token + patches + position embedding straight into place
            out = x.new_empty(b * t, 1 + h * w, c)
            out[:, 0] = self.cls_token + self.pos_embed[0]
            torch.add(x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c), self.pos_embed[1:], out=out[:, 1:])
            return self.norm_pre(out)
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        cls = self.cls_token.to(x.dtype).expand(b * t, 1, c)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        return self.norm_pre(x)

    def _global_tokens(self, x: torch.Tensor, stage: int, b: int, t: int) -> torch.Tensor:
        """Tokens of one layer with the DPE added to the patch tokens -> (B, T'·(1+h·w), C)."""
        return self.dpe[stage].add_to_tokens(x, t, inplace_ok=self._use_fast_path(x))

    def _fuse_stage(self, state: torch.Tensor | None, stage: int, tokens: torch.Tensor) -> torch.Tensor:
        """One step of multi-stage fusion. Returns the new state (see module docstring)."""
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

    def _video_token(self, state: torch.Tensor) -> torch.Tensor:
        if self.cfg.fusion == "parallel":
            return self.query[0, 0] + self.fuse_proj(state.flatten(1))
        return state.mean(dim=1)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised video -> fused pre-head feature (B, C)."""
        self.check_input(video)
        b, t = video.shape[0], self.cfg.time_steps
        x = self.embed(video)
        fast = self._use_fast_path(x)
        state = None
        for i, blk in enumerate(self.blocks):
            x = blk.forward_inplace(x, t) if fast else blk(x, t)
            stage = self._stage_of.get(i)
            if stage is not None:
                state = self._fuse_stage(state, stage, self._global_tokens(x, stage, b, t))
        video_token = self._video_token(state) if state is not None else self.query[0, 0].expand(b, -1)
        if self.balance is None:  # frozen backbone: the query alone
            return video_token
        w = torch.sigmoid(self.balance)
        frame_cls = x.view(b, t, -1, x.shape[-1])[:, :, 0].mean(dim=1)
        return (1 - w) * video_token + w * frame_cls

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised video -> logits (B, num_classes)."""
        return self.head(self.forward_features(video))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory, **metadata):
        """Write ``config.json`` + ``model.safetensors`` (see :mod:`uniformerv2.weights.hub`)."""
        from ..weights.hub import save_pretrained

        return save_pretrained(self, directory, **metadata)
