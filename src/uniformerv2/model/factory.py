"""``create_model``: arch or preset name + options (+ weights) -> ``UniFormerV2``."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .presets import ARCHS, PRESETS, arch_defaults, get_preset
from .uniformerv2 import ModelConfig, UniFormerV2


def build_config(name: str, **options) -> tuple[ModelConfig, "Preset | None"]:  # noqa: F821
    """The model config of an arch or preset name with ``options`` on top."""
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


def create_model(name: str, *, pretrained: str | Path | None = None, checkpoint: str | Path | None = None,
                 head: str = "auto", labels: list[str] | str | None = None, checkpoint_labels=None,
                 verbose: bool = False, **options) -> UniFormerV2:
    """Build a UniFormerV2 by arch (``uniformerv2_b16``…) or preset (``k400_b16_8x224``…) name.

    options: any :class:`ModelConfig` field (``num_classes``, ``num_frames``, ``img_size``,
    ``temporal_downsample``, ``local_mhra``, ``global_layers``, ``fusion``, ``frozen_backbone``, …).
    pretrained: an image-ViT weights file (OpenAI CLIP, open_clip, timm, Hugging Face) to arm the backbone.
    checkpoint: a whole UniFormerV2 checkpoint, ours (model dir or file) or official (``.pyth``).
    head: "auto" (keep, or map rows by class name, else reset with a warning), "keep" or "reset".
    labels: class names of this model (a list, a shipped list name or a labels file); defaults to the
        preset's list.  checkpoint_labels: the class names of the checkpoint's head, when not standard.
    """
    from ..labels import load_labels
    from ..weights.loading import arm_backbone, load_checkpoint

    if head not in ("auto", "keep", "reset"):
        raise UserError(f"head must be 'auto', 'keep' or 'reset', got {head!r}")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    if labels is not None and "num_classes" not in options:
        options["num_classes"] = len(labels)  # the class names fix the head's size
    cfg, preset = build_config(name, **options)
    model = UniFormerV2(cfg)
    if labels is None and preset is not None and len(load_labels(preset.labels)) == cfg.num_classes:
        labels = load_labels(preset.labels)
    if labels is not None and len(labels) != cfg.num_classes:
        raise UserError(f"{len(labels)} labels given for a {cfg.num_classes}-class model")
    model.labels = list(labels) if labels is not None else None
    model.preset = preset.name if preset else None
    model.data_config = preset.data_config() if preset else default_data_config(cfg)
    model.load_report = None
    if pretrained is not None:
        model.load_report = arm_backbone(model, pretrained, verbose=verbose)
    if checkpoint is not None:
        model.load_report = load_checkpoint(model, checkpoint, head=head, checkpoint_labels=checkpoint_labels,
                                            verbose=verbose)
    return model


def default_data_config(cfg: ModelConfig) -> dict:
    """Official defaults for a model without a preset: sparse sampling, 0.45/0.225, crop = input size."""
    return dict(num_frames=cfg.num_frames, crop_size=cfg.img_size, short_side=cfg.img_size,
                mean=[0.45] * 3, std=[0.225] * 3, sampling="sparse", test_clips=1, test_crops=1,
                flip=True, bgr=False, rand_augment=None, repeated_aug=1)


def load_model(path: str | Path, preset: str | None = None, **overrides) -> UniFormerV2:
    """A trained model from any supported file: our model directory, our checkpoint file, or an official
    ``.pyth``.  ``preset`` gives the architecture and data settings of files that carry no config
    (official checkpoints); without it they are read off the tensor shapes."""
    from ..weights.hub import from_pretrained, is_model_dir
    from ..weights.loading import infer_options, read_checkpoint

    if is_model_dir(path):
        if preset is not None:
            return create_model(preset, checkpoint=path, **overrides)
        return from_pretrained(path, **overrides)
    if preset is not None:
        return create_model(preset, checkpoint=path, **overrides)
    sd, _, _ = read_checkpoint(path)
    options = infer_options(sd)
    arch = options.pop("arch")
    return create_model(arch, checkpoint=path, **{**options, **overrides})
