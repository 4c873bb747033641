"""Clip transforms in plain torch.

A clip enters as uint8 RGB ``(T, H, W, 3)`` (what the decoders return) and leaves as float ``(3, T, H, W)``,
normalised; the test transform with several crops returns ``(C, 3, T, H, W)``. Internally frames are
``(T, 3, H, W)`` so that ``F.interpolate`` treats time as the batch.

Official recipe (spec section 3): test/val resize the short side to the crop size (bilinear) and take the
centre or three crops; train applies RandAugment at the original resolution, then an Inception random resized
crop (bilinear), then a horizontal flip (off for Something-Something). The official code normalises before the
crop; bilinear interpolation commutes with the per-channel affine normalisation, so cropping first and
normalising last gives the same values (up to float rounding) for less work.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError

DEFAULT_MEAN = (0.45, 0.45, 0.45)
DEFAULT_STD = (0.225, 0.225, 0.225)


def to_frames(clip: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (T, 3, H, W) view."""
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a clip of shape (T, H, W, 3), got {tuple(clip.shape)}")
    return clip.permute(0, 3, 1, 2)


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (T, 3, H, W) to ``size`` = (h, w), no antialias, float output."""
    frames = frames.float()
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False)


def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """Target (h, w) with the short side ``short`` and the long side floor(long / short_in * short)."""
    if h <= w:
        return short, int(math.floor(w / h * short))
    return int(math.floor(h / w * short)), short


def resize_short_side(frames: torch.Tensor, short: int) -> torch.Tensor:
    return resize(frames, short_side_size(*frames.shape[-2:], short))


def crop_offsets(h: int, w: int, size: int, position: int) -> tuple[int, int]:
    """Top-left (y, x) of a ``size`` square; position 0/1/2 = left/centre/right for landscape frames,
    top/centre/bottom for portrait ones. The centre offset is ceil((len - size) / 2)."""
    if h < size or w < size:
        raise UserError(f"cannot crop {size}x{size} from {h}x{w}")
    y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if position != 1:
        if h > w:
            y = 0 if position == 0 else h - size
        else:
            x = 0 if position == 0 else w - size
    return y, x


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    y, x = crop_offsets(*frames.shape[-2:], size, 1)
    return frames[..., y:y + size, x:x + size]


def three_crops(frames: torch.Tensor, size: int) -> list[torch.Tensor]:
    out = []
    for position in (0, 1, 2):
        y, x = crop_offsets(*frames.shape[-2:], size, position)
        out.append(frames[..., y:y + size, x:x + size])
    return out


def _uniform(lo: float, hi: float, g) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def random_resized_crop_box(h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=None,
                            attempts: int = 10) -> tuple[int, int, int, int]:
    """Inception crop box (y, x, ch, cw): area fraction ~ U(scale), aspect ~ log-uniform(ratio); after
    ``attempts`` misses, the largest centred box whose aspect is clamped into ``ratio``."""
    area = h * w
    for _ in range(attempts):
        target = area * _uniform(*scale, generator)
        aspect = math.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), generator))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            y = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            x = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return y, x, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        ch, cw = h, round(h * max(ratio))
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def normalize(frames: torch.Tensor, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """(..., 3, H, W) in [0, 255] -> (x / 255 - mean) / std, float32."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255
    return (frames.float() - m) / s


class ClipTransform:
    """Callable ``(clip uint8 (T, H, W, 3), generator=None) -> tensor``; built by ``build_transform``."""

    def __init__(self, split, crop_size, short_side, mean, std, flip, rand_augment, num_crops, scale, ratio,
                 output):
        self.split, self.crop_size, self.short_side = split, crop_size, short_side or crop_size
        self.mean, self.std, self.flip, self.num_crops = mean, std, flip, num_crops
        self.scale, self.ratio, self.output = scale, ratio, output
        self.rand_augment = None
        if rand_augment:
            from .randaugment import RandAugment
            self.rand_augment = RandAugment.from_string(rand_augment) if isinstance(rand_augment, str) else rand_augment

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        frames = to_frames(torch.as_tensor(clip))
        if self.split == "train":
            if self.rand_augment is not None:
                frames = self.rand_augment(frames, generator)
            y, x, ch, cw = random_resized_crop_box(*frames.shape[-2:], self.scale, self.ratio, generator)
            frames = resize(frames[..., y:y + ch, x:x + cw], (self.crop_size, self.crop_size))
            if self.flip and float(torch.rand((), generator=generator)) < 0.5:
                frames = frames.flip(-1)
            views = [frames]
        else:
            frames = resize_short_side(frames, self.short_side)
            views = three_crops(frames, self.crop_size) if self.num_crops == 3 else [center_crop(frames, self.crop_size)]
        out = [self._finish(v) for v in views]
        return out[0] if len(out) == 1 else torch.stack(out)

    def _finish(self, frames: torch.Tensor) -> torch.Tensor:
        if self.output == "uint8":
            frames = frames.round().clamp(0, 255).to(torch.uint8) if frames.is_floating_point() else frames
        else:
            frames = normalize(frames, self.mean, self.std)
        return frames.permute(1, 0, 2, 3).contiguous()   # (3, T, H, W)

    def __repr__(self):
        return (f"ClipTransform(split={self.split!r}, crop_size={self.crop_size}, short_side={self.short_side}, "
                f"flip={self.flip}, rand_augment={self.rand_augment!r}, num_crops={self.num_crops}, "
                f"output={self.output!r})")


def build_transform(split: str, *, crop_size: int = 224, short_side: int | None = None, mean=DEFAULT_MEAN,
                    std=DEFAULT_STD, flip: bool = True, rand_augment=None, num_crops: int = 1,
                    scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), output: str = "float") -> ClipTransform:
    """Train/val/test clip transform from explicit parameters.

    ``short_side`` (val/test) defaults to ``crop_size``; ``num_crops`` is 1 or 3 (test); ``rand_augment`` is a
    timm-style string such as ``"rand-m7-n4-mstd0.5-inc1"`` or None; ``output="uint8"`` skips normalisation
    (normalise later on the device with ``DeviceAugment``) and returns uint8 ``(3, T, H, W)``.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if output not in ("float", "uint8"):
        raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
    return ClipTransform(split, crop_size, short_side, tuple(mean), tuple(std), flip, rand_augment, num_crops,
                         tuple(scale), tuple(ratio), output)


class DeviceAugment(torch.nn.Module):
    """Normalise a collated uint8 batch ``(B, 3, T, H, W)`` on its device, with an optional per-clip random
    horizontal flip: ship 4x fewer bytes from the workers and do the float work on the accelerator."""

    def __init__(self, mean=DEFAULT_MEAN, std=DEFAULT_STD, flip: bool = False):
        super().__init__()
        self.register_buffer("scale", 1 / (torch.tensor(std) * 255).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1, 1), persistent=False)
        self.flip = flip

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = batch.float() * self.scale - self.shift
        if self.flip:
            mask = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(mask.to(x.device).view(-1, 1, 1, 1, 1), x.flip(-1), x)
        return x
