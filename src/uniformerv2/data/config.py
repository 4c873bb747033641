"""``DataConfig``: everything the input pipeline needs to feed a model, in one typed record.

A model carries one (``model.data_config``): presets give the official recipe's values, model directories
store it in ``config.json`` under ``"data"``, and a training config's ``data.pipeline`` overrides fields of it.
The defaults below are the only place where they are written down; a model without a preset gets them with
its own frame count and input size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..typed import TypedConfig

SAMPLINGS = ("sparse", "dense")
OFFICIAL_MEAN = (0.45, 0.45, 0.45)
OFFICIAL_STD = (0.225, 0.225, 0.225)


@dataclass
class DataConfig(TypedConfig):
    """Frames, sizes, normalisation, sampling, test views and training augmentation of a model.

    num_frames    frames per clip (the model's T)
    crop_size     square input size (the model's ``img_size``)
    short_side    test/val: the short side is resized to this before cropping (None: ``crop_size``, official)
    mean, std     per-channel normalisation of [0, 1] values (official: 0.45 / 0.225, not CLIP's)
    bgr           the model expects BGR channel order (the official Something-Something checkpoints)
    sampling      "sparse" (TSN-style segments, every official recipe) or "dense" (``stride`` frames apart)
    test_clips, test_crops   test views: temporal clips x spatial crops (1 or 3)
    flip          random horizontal flip in training (off where left/right is a class)
    rand_augment  timm-style RandAugment spec (e.g. "rand-m7-n4-mstd0.5-inc1") or None
    repeated_aug  clips drawn per video and step in training (repeated augmentation)
    crop_scale    area range of the training random-resized crop
    """

    WHAT = "data option"

    num_frames: int = 8
    crop_size: int = 224
    short_side: int | None = None
    mean: list = field(default_factory=lambda: list(OFFICIAL_MEAN))
    std: list = field(default_factory=lambda: list(OFFICIAL_STD))
    bgr: bool = False
    sampling: str = "sparse"
    stride: int | None = None
    test_clips: int = 1
    test_crops: int = 1
    flip: bool = True
    rand_augment: str | None = None
    repeated_aug: int = 1
    crop_scale: list = field(default_factory=lambda: [0.08, 1.0])

    def __post_init__(self):
        self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]
        self.crop_scale = [float(v) for v in self.crop_scale]
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"mean and std need 3 values (std > 0), got {self.mean} / {self.std}")
        for name in ("num_frames", "crop_size", "test_clips", "repeated_aug"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"data option {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.test_crops not in (1, 3):
            raise UserError(f"test_crops must be 1 or 3, got {self.test_crops!r}")
        if self.sampling not in SAMPLINGS:
            raise UserError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling == "dense" and not self.stride:
            raise UserError("dense sampling needs a stride (data option 'stride')")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise UserError(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")

    @property
    def test_short_side(self) -> int:
        return self.short_side or self.crop_size

    @property
    def views(self) -> tuple[int, int]:
        """Default test views (clips, crops)."""
        return self.test_clips, self.test_crops
