"""The training augmentation on the training device, batched (``data.augment_on: device``).

The DataLoader workers only decode and sample: each item is the decoded uint8 clip ``(T, H, W, 3)``
(``VideoListDataset(..., raw=True)``) and ``collate_clips`` places the clips of a batch on one uint8 canvas
``(B, T, Hc, Wc, 3)`` (top-left, the canvas the size of the largest clip: clips of one size need no
padding) with each clip's size in ``batch["size"]``. ``TrainAugment`` then runs what ``ClipTransform("train")`` runs on the
CPU, for the whole batch on the device:

1. repeated augmentation: every clip becomes ``repeats`` consecutive rows (shipped once);
2. RandAugment at the clip's own resolution (``randaugment.apply_plans``: one op sequence, magnitudes and signs
   per clip, the same code as the CPU RandAugment, which runs it on one unpadded clip);
3. the Inception random-resized crop and bilinear resize to ``crop_size`` (``F.interpolate`` per clip, as on
   the CPU);
4. the horizontal flip; 5. normalisation to float ``(B, 3, T, S, S)``; 6. mixup / CutMix (``mixup``).

Randomness: row ``r`` of the clip with sample index ``i`` draws from ``augment_generator(seed, epoch, i, r)``,
a generator of its own derived from (seed, epoch, index) like the dataset's (``loader.sample_generator``) but
a separate stream, in the order ``ClipTransform`` draws: RandAugment plan, crop box, flip. Nothing depends on the
batch's other clips, its canvas size, the DataLoader workers or the process count, so exact resume and
worker-count independence hold as on the CPU path; for the same draws the output equals the CPU transform's
within uint8 rounding (``tests/test_device_augment.py``). Mixup draws once per batch from
``(seed, epoch, index of the batch's first clip)``. The parameters are drawn on the host (a few numbers per
clip) and the pixels never leave the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .loader import collate, sample_generator
from .randaugment import FILL, RandAugment, Region, apply_plans
from .transforms import DEFAULT_MEAN, DEFAULT_STD, random_resized_crop_box, resize

_AUGMENT_STREAM = 0x5EED_A116
_MIXUP_STREAM = 0x5EED_313C


def augment_generator(seed: int, epoch: int, index: int, repeat: int = 0) -> torch.Generator:
    """The generator of augmented row ``repeat`` of sample ``index`` in ``epoch``."""
    base = sample_generator(seed, epoch, index).initial_seed()
    return sample_generator(base, _AUGMENT_STREAM, repeat)


def mixup_generator(seed: int, epoch: int, first_index: int) -> torch.Generator:
    base = sample_generator(seed, epoch, first_index).initial_seed()
    return sample_generator(base, _MIXUP_STREAM, 0)


# ------------------------------------------------------------------------------------------------ workers
def collate_clips(items: list) -> dict:
    """``collate`` for decoded clips of different sizes: ``video`` uint8 ``(B, T, Hc, Wc, 3)`` (each clip at the
    top left, zeros elsewhere), ``size`` int64 ``(B, 2)`` the (height, width) of each; the rest as ``collate``.
    Clips of one batch must have the same number of frames."""
    good = [it for it in items if "error" not in it]
    clips = [torch.as_tensor(it["video"]) for it in good]
    out = collate([it if "error" in it else {**it, "video": torch.zeros(())} for it in items])
    if not clips:
        out["size"] = torch.zeros(0, 2, dtype=torch.long)
        return out
    for c in clips:
        if c.ndim != 4 or c.shape[-1] != 3 or c.dtype != torch.uint8:
            raise ValueError(f"collate_clips takes decoded uint8 clips (T, H, W, 3), got {tuple(c.shape)} {c.dtype}")
    t = clips[0].shape[0]
    height, width = max(c.shape[1] for c in clips), max(c.shape[2] for c in clips)
    video = torch.zeros(len(clips), t, height, width, 3, dtype=torch.uint8)
    for b, c in enumerate(clips):
        video[b, :, :c.shape[1], :c.shape[2]] = c
    out["video"] = video
    out["size"] = torch.tensor([[c.shape[1], c.shape[2]] for c in clips], dtype=torch.long)
    return out


# ------------------------------------------------------------------------------------------------ the device
@dataclass
class ClipDraw:
    """One augmented row's random choices, in the order ``ClipTransform`` draws them."""
    plan: list          # RandAugment ops [(name, magnitude, sign)], [] without RandAugment
    box: tuple          # (y, x, height, width) of the crop, in the clip's pixels
    flip: bool


class TrainAugment:
    """The training transform's random parts and normalisation, batched on ``device`` (see the module
    docstring). ``__call__(batch, epoch) -> (video float (B·repeats, 3, T, S, S), labels)``, both on the
    device; labels are soft ``(B·repeats, num_classes)`` with ``mixup``, else int64 ``(B·repeats,)``."""

    def __init__(self, *, crop_size: int = 224, mean=DEFAULT_MEAN, std=DEFAULT_STD, flip: bool = True,
                 rand_augment=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), repeats: int = 1, mixup=None,
                 seed: int = 0, device="cpu", bgr: bool = False):
        self.crop_size, self.flip, self.repeats, self.seed = int(crop_size), bool(flip), int(repeats), int(seed)
        self.scale, self.ratio, self.mixup = tuple(scale), tuple(ratio), mixup
        self.rand_augment = (RandAugment.from_string(rand_augment) if isinstance(rand_augment, str)
                             else rand_augment)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1, 1) * 255

    @classmethod
    def from_data_config(cls, dc, *, seed: int, device="cpu", mixup=None) -> "TrainAugment":
        return cls(crop_size=dc.crop_size, mean=dc.mean, std=dc.std, flip=dc.flip, rand_augment=dc.rand_augment,
                   scale=dc.crop_scale, repeats=dc.repeated_aug, mixup=mixup, seed=seed, device=device)

    def __repr__(self):
        return (f"TrainAugment(crop_size={self.crop_size}, flip={self.flip}, rand_augment={self.rand_augment!r}, "
                f"repeats={self.repeats}, mixup={self.mixup is not None}, device={self.device})")

    # ---- random choices (host)
    def draw(self, generator: torch.Generator, height: int, width: int) -> ClipDraw:
        plan = self.rand_augment.sample(generator) if self.rand_augment is not None else []
        box = random_resized_crop_box(height, width, self.scale, self.ratio, generator)
        flip = self.flip and float(torch.rand((), generator=generator)) < 0.5
        return ClipDraw(plan, box, flip)

    def draws(self, indices, sizes, epoch: int) -> list[ClipDraw]:
        """The choices of every row: clip ``indices[b]`` (its (h, w) in ``sizes[b]``) x ``repeats``."""
        return [self.draw(augment_generator(self.seed, epoch, int(i), r), int(h), int(w))
                for i, (h, w) in zip(indices, sizes) for r in range(self.repeats)]

    # ---- pixels (device)
    def __call__(self, batch: dict, epoch: int):
        video, labels = batch["video"], batch["label"]
        indices = batch["index"].tolist()
        sizes = batch["size"].tolist() if "size" in batch else [tuple(video.shape[2:4])] * len(indices)
        draws = self.draws(indices, sizes, epoch)
        video = video.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.repeats > 1:
            video = video.repeat_interleave(self.repeats, 0)
            labels = labels.repeat_interleave(self.repeats, 0)
            sizes = [s for s in sizes for _ in range(self.repeats)]
        x = self.apply(video, sizes, draws)
        if self.mixup is not None:
            x, labels = self.mixup(x, labels, mixup_generator(self.seed, epoch, indices[0]))
        return x, labels

    def apply(self, video: torch.Tensor, sizes, draws: list[ClipDraw]) -> torch.Tensor:
        """uint8 canvas ``(B, T, H, W, 3)`` on the device, clip sizes, one ``ClipDraw`` per row -> float
        ``(B, 3, T, S, S)``, normalised."""
        x = video.permute(0, 1, 4, 2, 3).float()                      # (B, T, 3, H, W)
        padded = any((h, w) != tuple(x.shape[-2:]) for h, w in sizes)
        region = None
        if padded:
            hw = torch.tensor(sizes, dtype=torch.long, device=x.device)
            region = Region(hw[:, 0], hw[:, 1], x.shape)
            x = torch.where(region.mask, x, FILL)
        if any(d.plan for d in draws):
            translate = self.rand_augment.translate_pct if self.rand_augment is not None else 0.45
            x = apply_plans(x, [d.plan for d in draws], region, translate)
        x = crop_resize(x, [d.box for d in draws], self.crop_size)   # (B, T, 3, S, S)
        flips = [d.flip for d in draws]
        if any(flips):
            mask = torch.tensor(flips, device=x.device).view(-1, 1, 1, 1, 1)
            x = torch.where(mask, x.flip(-1), x)
        x = x.permute(0, 2, 1, 3, 4)                                  # (B, 3, T, S, S)
        return ((x - self.mean) / self.std).contiguous()


def crop_resize(x: torch.Tensor, boxes: list, size: int) -> torch.Tensor:
    """Crop box ``(y, x, h, w)`` of each clip of ``(B, T, C, H, W)`` and resize it to ``size`` x ``size`` as the CPU
    transform does (``transforms.resize``: bilinear, align_corners=False, no antialias; edges clamped to the
    box, not the canvas). One call per clip: B small kernels, next to a training step's hundreds."""
    return torch.stack([resize(x[b, :, :, y:y + h, x0:x0 + w], (size, size))
                        for b, (y, x0, h, w) in enumerate(boxes)])


class ToDevice:
    """``data.augment_on: cpu``: the workers already augmented and normalised; move the batch, then mixup
    (batch-level, on the device) when configured. Same call as ``TrainAugment``."""

    def __init__(self, device="cpu", *, mixup=None, seed: int = 0):
        self.device, self.mixup, self.seed = torch.device(device), mixup, int(seed)

    def __call__(self, batch: dict, epoch: int):
        x = batch["video"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        if self.mixup is not None:
            x, labels = self.mixup(x, labels, mixup_generator(self.seed, epoch, int(batch["index"][0])))
        return x, labels


__all__ = ["TrainAugment", "ToDevice", "ClipDraw", "collate_clips", "crop_resize", "augment_generator",
           "mixup_generator"]
