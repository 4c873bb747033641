"""Clip-consistent RandAugment on uint8 frames ``(T, 3, H, W)``, re-implemented in torch.

Semantics of timm's ``rand-m{M}-n{N}-mstd{S}-inc1`` as the official pipeline uses it: per clip, draw N ops
uniformly (with replacement) from the 15 "increasing" ops; each op runs with probability 0.5 at magnitude
~ N(M, S) clipped to [0, 10], with a random sign where the op has one. Every frame of a clip gets the same
ops, magnitudes and signs (statistics such as auto-contrast ranges are per frame, as with per-image PIL ops).
Geometric ops use bicubic sampling and fill (128, 128, 128). Pixel formulas follow PIL's (ImageOps,
ImageEnhance) to within rounding.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

MAX_LEVEL = 10.0
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
FILL = 128.0


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as PIL's "L" mode, (T, 1, H, W) float."""
    return (x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114).round()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    return degenerate + factor * (x - degenerate)


def _affine(x: torch.Tensor, matrix) -> torch.Tensor:
    """Output pixel at continuous (u, v) samples input at (a u + b v + c, d u + e v + f), pixel centres at +0.5."""
    t, _, h, w = x.shape
    a, b, c, d, e, f = matrix
    # map normalised output coords to normalised input coords (align_corners=False convention)
    theta = torch.tensor([[a, b * h / w, (a * w + b * h + 2 * c) / w - 1],
                          [d * w / h, e, (d * w + e * h + 2 * f) / h - 1]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(t, 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x - FILL, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    return out + FILL


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.equalize per frame and channel."""
    t, c, h, w = x.shape
    flat = x.reshape(t * c, h * w).long()
    hist = torch.zeros(t * c, 256, dtype=torch.long).scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - torch.flip(hist > 0, dims=[1]).float().argmax(1)         # highest used level
    step = (hist.sum(1) - hist.gather(1, last[:, None]).squeeze(1)) // 255
    cum = torch.cumsum(hist, 1) - hist                                      # count below each level
    lut = ((cum + (step // 2)[:, None]) // step.clamp(min=1)[:, None]).clamp(0, 255)
    lut = torch.where((step == 0)[:, None], torch.arange(256).expand(t * c, 256), lut)
    return lut.gather(1, flat).reshape(t, c, h, w).float()


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = 255 / (hi - lo).clamp(min=1)
    out = ((x - lo) * scale).floor().clamp(0, 255)
    return torch.where(hi > lo, out, x)


def _sharpness_degenerate(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=torch.float32) / 13
    smooth = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), kernel.view(1, 1, 3, 3)).reshape(*x.shape[:2], x.shape[2] - 2, x.shape[3] - 2)
    out = x.clone()
    out[..., 1:-1, 1:-1] = smooth.round()
    return out


class RandAugment:
    def __init__(self, magnitude: float = 7, num_ops: int = 4, magnitude_std: float = 0.5, prob: float = 0.5,
                 translate_pct: float = 0.45):
        self.magnitude, self.num_ops, self.magnitude_std = magnitude, num_ops, magnitude_std
        self.prob, self.translate_pct = prob, translate_pct

    @classmethod
    def from_string(cls, spec: str) -> "RandAugment":
        """Parse ``rand-m7-n4-mstd0.5-inc1`` (only the increasing op set, inc1, is implemented)."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"not a RandAugment spec: {spec!r}")
        kw = {}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)([\d.]+)", part)
            if match is None:
                raise ValueError(f"bad RandAugment option {part!r} in {spec!r}")
            key, value = match.groups()
            if key == "m":
                kw["magnitude"] = float(value)
            elif key == "n":
                kw["num_ops"] = int(value)
            elif key == "mstd":
                kw["magnitude_std"] = float(value)
            elif key == "inc":
                if int(value) != 1:
                    raise ValueError(f"only inc1 (increasing ops) is supported: {spec!r}")
            else:
                raise ValueError(f"unknown RandAugment option {part!r} in {spec!r}")
        return cls(**kw)

    def __repr__(self):
        return f"RandAugment(m={self.magnitude}, n={self.num_ops}, mstd={self.magnitude_std})"

    def sample(self, generator=None) -> list[tuple[str, float, float]]:
        """The clip's ops as ``(name, magnitude, sign)``; skipped ops (probability 1 - prob) are left out."""
        chosen = torch.randint(0, len(OPS), (self.num_ops,), generator=generator).tolist()
        plan = []
        for k in chosen:
            apply, noise, sign = torch.rand(3, generator=generator).tolist()
            if apply >= self.prob:
                continue
            m = self.magnitude + self.magnitude_std * float(torch.randn((), generator=generator))
            plan.append((OPS[k], min(max(m, 0.0), MAX_LEVEL), -1.0 if sign < 0.5 else 1.0))
        return plan

    def __call__(self, frames: torch.Tensor, generator=None) -> torch.Tensor:
        """uint8 (T, 3, H, W) -> uint8 (T, 3, H, W), same ops for every frame."""
        plan = self.sample(generator)
        if not plan:
            return frames
        x = frames.float()
        for name, m, sign in plan:
            x = self.apply(x, name, m, sign).round().clamp(0, 255)
        return x.to(torch.uint8)

    def apply(self, x: torch.Tensor, name: str, m: float, sign: float) -> torch.Tensor:
        """One op on float frames in [0, 255] at magnitude ``m`` (0-10)."""
        level = m / MAX_LEVEL
        h, w = x.shape[-2:]
        if name == "AutoContrast":
            return _autocontrast(x)
        if name == "Equalize":
            return _equalize(x)
        if name == "Invert":
            return 255 - x
        if name == "Posterize":                       # keeps 4 - int(4 * level) bits
            bits = 4 - int(level * 4)
            mask = (0xFF << (8 - bits)) & 0xFF
            return (x.to(torch.uint8) & mask).float()
        if name == "Solarize":                        # threshold 256 - int(256 * level)
            return torch.where(x >= 256 - int(level * 256), 255 - x, x)
        if name == "SolarizeAdd":
            return torch.where(x < 128, (x + int(level * 110)).clamp(max=255), x)
        if name in ("Color", "Contrast", "Brightness", "Sharpness"):
            factor = max(0.1, 1.0 + sign * level * 0.9)
            if name == "Color":
                degenerate = _gray(x).expand_as(x)
            elif name == "Contrast":
                degenerate = _gray(x).mean(dim=(1, 2, 3), keepdim=True).add(0.5).floor().expand_as(x)
            elif name == "Brightness":
                degenerate = torch.zeros_like(x)
            else:
                degenerate = _sharpness_degenerate(x)
            return _blend(degenerate, x, factor)
        if name == "Rotate":                          # counter-clockwise degrees, about the centre
            rad = -math.radians(sign * level * 30)
            cx, cy = w / 2, h / 2
            cos, sin = math.cos(rad), math.sin(rad)
            return _affine(x, (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))
        if name == "ShearX":
            return _affine(x, (1, sign * level * 0.3, 0, 0, 1, 0))
        if name == "ShearY":
            return _affine(x, (1, 0, 0, sign * level * 0.3, 1, 0))
        if name == "TranslateXRel":
            return _affine(x, (1, 0, sign * level * self.translate_pct * w, 0, 1, 0))
        if name == "TranslateYRel":
            return _affine(x, (1, 0, 0, 0, 1, sign * level * self.translate_pct * h))
        raise ValueError(f"unknown op {name!r}")
