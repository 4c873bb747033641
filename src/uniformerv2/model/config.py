"""``ModelConfig``: everything that determines the architecture, and nothing else. Saved as ``config.json``."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..typed import TypedConfig

FUSIONS = ("sequential", "parallel", "hierarchical_q", "hierarchical_kv")
LOCAL_MHRA = ("none", "single", "double")
DROP_PATH_MODES = ("official", "sample")


@dataclass
class ModelConfig(TypedConfig):
    WHAT = "model option"
    # "grad_checkpointing" was stored here by earlier versions; it is a training setting
    # (``train.grad_checkpointing`` / ``accel.optimize``), read and dropped.
    LEGACY_KEYS = ("grad_checkpointing",)

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

    def __post_init__(self):
        self.global_layers = [int(i) for i in self.global_layers]
        if self.local_mhra not in LOCAL_MHRA:
            raise UserError(f"local_mhra must be one of {LOCAL_MHRA}, got {self.local_mhra!r}")
        if self.fusion not in FUSIONS:
            raise UserError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.drop_path_mode not in DROP_PATH_MODES:
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
