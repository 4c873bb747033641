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

from ..errors import UserError

MAX_LEVEL = 10.0
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
FILL = 128.0


class Region:
    """Where each clip of a padded batch lies: clip ``b`` fills rows ``[0, h[b])`` and columns ``[0, w[b])``
    of the canvas (``mask``: (B, 1, 1, H, W) True there). Statistics (auto-contrast range, histogram, mean
    grey level) are taken over that region only, geometry is about its own centre, and the ops keep the rest
    of the canvas at the fill value, which is what a geometric op samples outside an image: so every clip comes
    out as if it had been transformed alone. ``None`` stands for unpadded clips."""

    def __init__(self, h: torch.Tensor, w: torch.Tensor, shape):
        self.h, self.w = h.long(), w.long()
        height, width = shape[-2:]
        rows = torch.arange(height, device=h.device).view(1, height, 1)
        cols = torch.arange(width, device=h.device).view(1, 1, width)
        self.mask = ((rows < self.h.view(-1, 1, 1)) & (cols < self.w.view(-1, 1, 1)))[:, None, None]

    def select(self, idx: torch.Tensor) -> "Region":
        sub = Region.__new__(Region)
        sub.h, sub.w, sub.mask = self.h[idx], self.w[idx], self.mask[idx]
        return sub

    def sizes(self) -> list[tuple[int, int]]:
        return list(zip(self.h.tolist(), self.w.tolist()))


def _column(values, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Per-clip parameters as a (B, 1, 1, 1, 1) tensor that broadcasts over (B, T, 3, H, W)."""
    return torch.tensor(values, dtype=dtype, device=x.device).view(-1, 1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as PIL's "L" mode, (..., 1, H, W) float."""
    return (x[..., 0:1, :, :] * 0.299 + x[..., 1:2, :, :] * 0.587 + x[..., 2:3, :, :] * 0.114).round()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return degenerate + factor * (x - degenerate)


def _affine(x: torch.Tensor, matrices: list) -> torch.Tensor:
    """Clip ``b``'s output pixel at continuous (u, v) samples its input at (a u + b v + c, d u + e v + f), pixel
    centres at +0.5 (PIL's ``Image.transform`` convention), bicubic, fill ``FILL`` outside the canvas."""
    bsz, t, c, h, w = x.shape
    # map normalised output coords to normalised input coords (align_corners=False convention)
    theta = torch.tensor([[[a, b * h / w, (a * w + b * h + 2 * cc) / w - 1],
                           [d * w / h, e, (d * w + e * h + 2 * f) / h - 1]] for a, b, cc, d, e, f in matrices],
                         dtype=torch.float32, device=x.device)
    flat = x.reshape(bsz, t * c, h, w)
    grid = F.affine_grid(theta, [bsz, t * c, h, w], align_corners=False)
    out = F.grid_sample(flat - FILL, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    return (out + FILL).view(bsz, t, c, h, w)


def _equalize(x: torch.Tensor, region: Region | None) -> torch.Tensor:
    """PIL ImageOps.equalize per frame and channel (histogram of the clip's own region)."""
    shape = x.shape
    n = shape[0] * shape[1] * shape[2]
    flat = x.reshape(n, -1).long()
    if region is None:
        weight = torch.ones_like(flat)
    else:
        weight = region.mask.expand(shape).reshape(n, -1).long()
    hist = torch.zeros(n, 256, dtype=torch.long, device=x.device).scatter_add_(1, flat, weight)
    last = 255 - torch.flip(hist > 0, dims=[1]).float().argmax(1)         # highest used level
    step = (hist.sum(1) - hist.gather(1, last[:, None]).squeeze(1)) // 255
    cum = torch.cumsum(hist, 1) - hist                                      # count below each level
    lut = ((cum + (step // 2)[:, None]) // step.clamp(min=1)[:, None]).clamp(0, 255)
    lut = torch.where((step == 0)[:, None], torch.arange(256, device=x.device).expand(n, 256), lut)
    return lut.gather(1, flat).reshape(shape).float()


def _autocontrast(x: torch.Tensor, region: Region | None) -> torch.Tensor:
    if region is None:
        lo, hi = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    else:
        lo = torch.where(region.mask, x, float("inf")).amin(dim=(-2, -1), keepdim=True)
        hi = torch.where(region.mask, x, float("-inf")).amax(dim=(-2, -1), keepdim=True)
    scale = 255 / (hi - lo).clamp(min=1)
    out = ((x - lo) * scale).floor().clamp(0, 255)
    return torch.where(hi > lo, out, x)


def _mean_gray(x: torch.Tensor, region: Region | None) -> torch.Tensor:
    """Mean grey level of each frame (B, T, 1, 1, 1), rounded as PIL's ``ImageEnhance.Contrast`` does (the sum
    is exact: integer grey levels added in float64)."""
    gray = _gray(x).double()
    if region is None:
        mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
    else:
        mask = region.mask.expand_as(gray)
        mean = (gray * mask).sum(dim=(-3, -2, -1), keepdim=True) / mask.sum(dim=(-3, -2, -1), keepdim=True)
    return mean.add(0.5).floor().float()


def _sharpness_degenerate(x: torch.Tensor, region: Region | None) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5, sum / 13) inside each clip; its border pixels are kept. The
    weighted sums of integer levels are exact in float32 whatever the order of the additions."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1))
    total = 4 * x
    for dy in range(3):
        for dx in range(3):
            total = total + p[..., dy:dy + h, dx:dx + w]
    smooth = (total / 13).round()
    rows = torch.arange(h, device=x.device).view(h, 1)
    cols = torch.arange(w, device=x.device).view(1, w)
    if region is None:
        inner = (rows >= 1) & (rows < h - 1) & (cols >= 1) & (cols < w - 1)
    else:
        hh, ww = region.h.view(-1, 1, 1, 1, 1), region.w.view(-1, 1, 1, 1, 1)
        inner = (rows >= 1) & (rows < hh - 1) & (cols >= 1) & (cols < ww - 1)
    return torch.where(inner, smooth, x)


def _sizes(x: torch.Tensor, region: Region | None) -> list[tuple[int, int]]:
    return [tuple(x.shape[-2:])] * x.shape[0] if region is None else region.sizes()


def apply_op(x: torch.Tensor, name: str, magnitudes, signs, region: Region | None = None,
             translate_pct: float = 0.45) -> torch.Tensor:
    """One op on float clips ``(B, T, 3, H, W)`` in [0, 255], clip ``b`` at magnitude ``magnitudes[b]`` (0-10)
    with sign ``signs[b]`` (the per-clip parameters are computed in Python as timm computes them). Not rounded:
    ``RandAugment`` rounds and clamps after every op."""
    levels = [m / MAX_LEVEL for m in magnitudes]
    if name == "AutoContrast":
        return _autocontrast(x, region)
    if name == "Equalize":
        return _equalize(x, region)
    if name == "Invert":
        return 255 - x
    if name == "Posterize":                       # keeps 4 - int(4 * level) bits
        masks = [(0xFF << (8 - (4 - int(v * 4)))) & 0xFF for v in levels]
        return (x.to(torch.uint8) & _column(masks, x, torch.uint8)).float()
    if name == "Solarize":                        # threshold 256 - int(256 * level)
        return torch.where(x >= _column([256 - int(v * 256) for v in levels], x), 255 - x, x)
    if name == "SolarizeAdd":
        return torch.where(x < 128, (x + _column([int(v * 110) for v in levels], x)).clamp(max=255), x)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = _column([max(0.1, 1.0 + s * v * 0.9) for v, s in zip(levels, signs)], x)
        if name == "Color":
            degenerate = _gray(x).expand_as(x)
        elif name == "Contrast":
            degenerate = _mean_gray(x, region).expand_as(x)
        elif name == "Brightness":
            degenerate = torch.zeros_like(x)
        else:
            degenerate = _sharpness_degenerate(x, region)
        return _blend(degenerate, x, factor)
    sizes = _sizes(x, region)
    if name == "Rotate":                          # counter-clockwise degrees, about the clip's centre
        matrices = []
        for v, s, (h, w) in zip(levels, signs, sizes):
            rad = -math.radians(s * v * 30)
            cx, cy, cos, sin = w / 2, h / 2, math.cos(rad), math.sin(rad)
            matrices.append((cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))
    elif name == "ShearX":
        matrices = [(1, s * v * 0.3, 0, 0, 1, 0) for v, s in zip(levels, signs)]
    elif name == "ShearY":
        matrices = [(1, 0, 0, s * v * 0.3, 1, 0) for v, s in zip(levels, signs)]
    elif name == "TranslateXRel":
        matrices = [(1, 0, s * v * translate_pct * w, 0, 1, 0) for v, s, (h, w) in zip(levels, signs, sizes)]
    elif name == "TranslateYRel":
        matrices = [(1, 0, 0, 0, 1, s * v * translate_pct * h) for v, s, (h, w) in zip(levels, signs, sizes)]
    else:
        raise ValueError(f"unknown op {name!r}")
    return _affine(x, matrices)


def apply_plans(x: torch.Tensor, plans: list, region: Region | None = None, translate_pct: float = 0.45
                ) -> torch.Tensor:
    """Run each clip's plan (``RandAugment.sample``) on float clips ``(B, T, 3, H, W)``: step by step, the clips
    whose step is the same op in one call. Rounded and clamped to [0, 255] after every op, as PIL images are."""
    owned = False     # x is the caller's until the first partial update copies it
    for step in range(max((len(p) for p in plans), default=0)):
        groups: dict = {}
        for b, plan in enumerate(plans):
            if step < len(plan):
                groups.setdefault(plan[step][0], []).append(b)
        for name, members in groups.items():
            whole = len(members) == x.shape[0]
            idx = torch.tensor(members, device=x.device)
            sub, sub_region = (x, region) if whole else (x[idx], None if region is None else region.select(idx))
            out = apply_op(sub, name, [plans[b][step][1] for b in members], [plans[b][step][2] for b in members],
                           sub_region, translate_pct).round().clamp(0, 255)
            if sub_region is not None:
                out = torch.where(sub_region.mask, out, FILL)
            if whole:
                x, owned = out, True
            else:
                if not owned:
                    x, owned = x.clone(), True
                x.index_copy_(0, idx, out)
    return x


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
            raise UserError(f"not a RandAugment spec: {spec!r}")
        kw = {}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)([\d.]+)", part)
            if match is None:
                raise UserError(f"bad RandAugment option {part!r} in {spec!r}")
            key, value = match.groups()
            if key == "m":
                kw["magnitude"] = float(value)
            elif key == "n":
                kw["num_ops"] = int(value)
            elif key == "mstd":
                kw["magnitude_std"] = float(value)
            elif key == "inc":
                if int(value) != 1:
                    raise UserError(f"only inc1 (increasing ops) is supported: {spec!r}")
            else:
                raise UserError(f"unknown RandAugment option {part!r} in {spec!r}")
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
        return apply_plans(frames.float()[None], [plan], None, self.translate_pct)[0].to(torch.uint8)

    def apply(self, x: torch.Tensor, name: str, m: float, sign: float) -> torch.Tensor:
        """One op on float frames (T, 3, H, W) in [0, 255] at magnitude ``m`` (0-10), not rounded."""
        return apply_op(x[None], name, [m], [sign], None, self.translate_pct)[0]
