"""Architectures and the official zoo's recipes ("presets") by name.

An *arch* fixes the image ViT (width, depth, heads, patch, resolution) and defaults to the Kinetics
design (global UniBlocks on the last 4 layers, no local MHRA, no temporal downsampling, 8 frames).
A *preset* is an arch plus everything a recipe needs to reproduce the official results: model options,
frames, crop size, sampling, normalisation, test views, label list and colour order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..data.config import DataConfig
from ..errors import UserError
from .config import ModelConfig

ARCHS: dict[str, dict] = {
    "uniformerv2_b16": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=224),
    "uniformerv2_l14": dict(embed_dim=1024, depth=24, num_heads=16, patch_size=14, img_size=224),
    "uniformerv2_l14_336": dict(embed_dim=1024, depth=24, num_heads=16, patch_size=14, img_size=336),
    # Small archs with the same structure, for tests, CPU demos and experiments from scratch.
    "uniformerv2_s16": dict(embed_dim=384, depth=12, num_heads=6, patch_size=16, img_size=224),
    "uniformerv2_tiny": dict(embed_dim=64, depth=4, num_heads=4, patch_size=8, img_size=64),
    "uniformerv2_nano": dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32),
}


def arch_defaults(arch: str) -> dict:
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    d = dict(ARCHS[arch], arch=arch)
    d["global_layers"] = list(range(d["depth"] - min(4, d["depth"]), d["depth"]))
    return d


@dataclass
class Preset:
    name: str
    arch: str
    model: dict = field(default_factory=dict)  # ModelConfig options on top of the arch
    labels: str = "kinetics400_uniformerv2_order"
    mean: tuple = (0.45, 0.45, 0.45)
    std: tuple = (0.225, 0.225, 0.225)
    sampling: str = "sparse"  # TSN-style segment sampling, as every official recipe
    test_clips: int = 4
    test_crops: int = 3
    flip: bool = True  # random horizontal flip in training (off for Something-Something)
    bgr: bool = False  # official SSv1/v2 checkpoints were trained on BGR frames
    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"
    repeated_aug: int = 1
    description: str = ""

    @property
    def num_frames(self) -> int:
        return self.model["num_frames"]

    @property
    def crop_size(self) -> int:
        return self.model.get("img_size", ARCHS[self.arch]["img_size"])

    def data_config(self, **changes) -> DataConfig:
        """What the data pipeline needs for this recipe (``changes``: e.g. the frames and input size of a
        model built from the preset with other options).  The test-time short side is the crop size, as
        official."""
        base = DataConfig(num_frames=self.num_frames, crop_size=self.crop_size, mean=list(self.mean),
                          std=list(self.std), sampling=self.sampling, test_clips=self.test_clips,
                          test_crops=self.test_crops, flip=self.flip, bgr=self.bgr,
                          rand_augment=self.rand_augment, repeated_aug=self.repeated_aug)
        return base.replace(**changes) if changes else base

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {}

_KINETICS = dict(labels={"k400": "kinetics400_uniformerv2_order", "k600": "kinetics600",
                         "k700": "kinetics700", "k710": "kinetics710_uniformerv2_order"},
                 classes={"k400": 400, "k600": 600, "k700": 700, "k710": 710})
_SSV = {"ssv2": ("something_something_v2", "Something-Something V2"),
        "sthv1": ("something_something_v1", "Something-Something V1")}


def _add(p: Preset):
    PRESETS[p.name] = p


def _kinetics_like(name, arch, frames, classes, labels, clips=4, crops=3, desc="", **model):
    _add(Preset(name, arch, dict(num_frames=frames, num_classes=classes, **model), labels=labels,
                test_clips=clips, test_crops=crops, description=desc))


for ds in ("k400", "k600", "k700", "k710"):
    n, lab = _KINETICS["classes"][ds], _KINETICS["labels"][ds]
    _kinetics_like(f"{ds}_b16_8x224", "uniformerv2_b16", 8, n, lab, desc=f"{ds.upper()} B/16, 8 frames, 4x3 views")
    _kinetics_like(f"{ds}_l14_8x224", "uniformerv2_l14", 8, n, lab, desc=f"{ds.upper()} L/14, 8 frames")
    _kinetics_like(f"{ds}_l14_8x336", "uniformerv2_l14_336", 8, n, lab, desc=f"{ds.upper()} L/14@336, 8 frames")
    if ds != "k710":
        for f in (16, 32):
            _kinetics_like(f"{ds}_l14_{f}x224", "uniformerv2_l14", f, n, lab, desc=f"{ds.upper()} L/14, {f} frames")
        for f in (32, 64):
            _kinetics_like(f"{ds}_l14_{f}x336", "uniformerv2_l14_336", f, n, lab,
                           desc=f"{ds.upper()} L/14@336, {f} frames")
    # Frozen-backbone family: only DPE, global blocks, query and head are trained; tested 3 clips x 1 crop.
    for f in (8, 32):
        if ds == "k710" and f == 32:
            continue
        _kinetics_like(f"{ds}_frozen_l14_{f}x336", "uniformerv2_l14_336", f, n, lab, clips=3, crops=1,
                       desc=f"{ds.upper()} frozen L/14@336, {f} frames", frozen_backbone=True)

for size, arch in (("b16", "uniformerv2_b16"), ("l14", "uniformerv2_l14"), ("l14", "uniformerv2_l14_336")):
    res = 336 if arch.endswith("336") else 224
    _kinetics_like(f"mit_{size}_8x{res}", arch, 8, 339, "moments_in_time", desc=f"Moments in Time {size.upper()}")

for ds, (lab, title) in _SSV.items():
    for size, arch, nglobal, depth in (("b16", "uniformerv2_b16", 8, 12), ("l14", "uniformerv2_l14", 16, 24)):
        for f in (16, 32):
            _add(Preset(
                f"{ds}_{size}_{f}x224", arch,
                dict(num_frames=f, num_classes=174, temporal_downsample=True, local_mhra="double",
                     global_layers=list(range(depth - nglobal, depth)), drop_path_rate=0.2,
                     global_drop_path_rate=0.4),
                labels=lab, test_clips=1, test_crops=3, flip=False, bgr=True, repeated_aug=2,
                description=f"{title} {size.upper()}, {f} frames, local+global UniBlocks, 1x3 views"))

for ds in ("anet", "hacs"):
    for f in (16, 32):
        _add(Preset(f"{ds}_l14_{f}x224", "uniformerv2_l14",
                    dict(num_frames=f, num_classes=200, drop_path_rate=0.2, global_drop_path_rate=0.4),
                    labels="activitynet", test_clips=10, test_crops=3,
                    description=f"{'ActivityNet' if ds == 'anet' else 'HACS'} L/14, {f} frames, untrimmed 10x3 views"))

# Small presets with both kinds of UniBlock, for tests and CPU demos (random init or trained here).
_add(Preset("tiny_k400_8x64", "uniformerv2_tiny", dict(num_frames=8, num_classes=400), test_clips=1, test_crops=1,
            description="tiny Kinetics-style model (global blocks only), for tests"))
_add(Preset("tiny_ssv2_8x64", "uniformerv2_tiny",
            dict(num_frames=8, num_classes=174, temporal_downsample=True, local_mhra="double", global_layers=[1, 2, 3]),
            labels="something_something_v2", test_clips=1, test_crops=1, flip=False, rand_augment=None,
            description="tiny Something-Something-style model (local + global UniBlocks, temporal downsampling)"))


def build_config(name: str, **options) -> tuple[ModelConfig, Preset | None]:
    """The model config of an arch or preset name with ``options`` (ModelConfig fields) on top, and the preset.

    Passing ``depth`` without ``global_layers`` puts the global blocks on the last ``min(4, depth)`` layers."""
    preset = None
    if name in PRESETS:
        preset = get_preset(name)
        base = dict(arch_defaults(preset.arch), **preset.model)
    elif name in ARCHS:
        base = arch_defaults(name)
    else:
        raise UserError(f"unknown model or preset {name!r}; see `uniformerv2 models`")
    if "depth" in options and "global_layers" not in options:
        d = int(options["depth"])
        options["global_layers"] = list(range(d - min(4, d), d))
    return ModelConfig.from_dict({**base, **options}), preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; see `uniformerv2 models` for the list")
    return PRESETS[name]


def list_presets(pattern: str | None = None) -> list[str]:
    import fnmatch

    return sorted(n for n in PRESETS if pattern is None or fnmatch.fnmatch(n, pattern))


def list_models(pattern: str | None = None) -> list[str]:
    import fnmatch

    return sorted(n for n in ARCHS if pattern is None or fnmatch.fnmatch(n, pattern))
