"""Mixup / CutMix with label smoothing for video batches ``(B, 3, T, H, W)``.

One mixing coefficient per batch; each clip is mixed with the clip at the mirrored batch position. CutMix
cuts the same box out of every frame. Targets come back as soft labels ``(B, num_classes)``. The official
UniFormerV2 recipes leave this off; it is here for custom recipes.
"""
from __future__ import annotations

import math

import torch


def one_hot_smooth(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) int -> (B, num_classes) float with ``1 - smoothing + smoothing/n`` on the class, ``smoothing/n`` off it."""
    off = smoothing / num_classes
    out = torch.full((target.shape[0], num_classes), off, device=target.device)
    return out.scatter_(1, target.long().view(-1, 1), 1.0 - smoothing + off)


def _beta(alpha: float, generator) -> float:
    g1 = torch._standard_gamma(torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator)
    return float(g1[0] / g1.sum())


class Mixup:
    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def sample(self, generator=None) -> tuple[float, bool]:
        """(lam, use_cutmix) for one batch; lam = 1 means no mixing."""
        if float(torch.rand((), generator=generator)) >= self.prob:
            return 1.0, False
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=generator)) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return (_beta(alpha, generator), use_cutmix) if alpha > 0 else (1.0, False)

    @staticmethod
    def cut_box(h: int, w: int, lam: float, generator=None) -> tuple[int, int, int, int]:
        """Box (y0, y1, x0, x1) of area about (1 - lam) * h * w, centred uniformly at random, clipped."""
        r = math.sqrt(1 - lam)
        ch, cw = int(h * r), int(w * r)
        cy, cx = (int(v) for v in torch.randint(0, h, (1,), generator=generator).tolist() +
                  torch.randint(0, w, (1,), generator=generator).tolist())
        return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, generator=None):
        """Mix ``x`` (B, 3, T, H, W) in place-free fashion; return ``(x, soft_target (B, num_classes))``."""
        lam, use_cutmix = self.sample(generator)
        y = one_hot_smooth(target, self.num_classes, self.label_smoothing).to(x.device)
        if lam >= 1.0:
            return x, y
        if use_cutmix:
            y0, y1, x0, x1 = self.cut_box(x.shape[-2], x.shape[-1], lam, generator)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (x.shape[-2] * x.shape[-1])   # the box actually cut
        else:
            x = x * lam + x.flip(0) * (1 - lam)
        return x, y * lam + y.flip(0) * (1 - lam)
