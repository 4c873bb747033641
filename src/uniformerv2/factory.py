"""One way to build, load and save a model: ``create_model``, ``load_model``, ``from_pretrained``,
``save_pretrained``.  Every entry point (``VideoClassifier``, the trainer, eval, export, convert, info) goes
through here.

What ``load_model`` accepts, and the rule for each:
  model directory   ``config.json`` + ``model.safetensors`` (``save_pretrained``): its own config says
                    everything; passing a preset is an error.
  run directory     a training run: its ``best/`` model directory, else ``final/``.
  weights file      an official ``.pyth``, a SlowFast checkpoint, an MMAction2 ``.pth`` or our state dict,
                    which carry no config: with ``preset`` the file is loaded into that preset's model
                    (recipe, labels, views); without one the architecture is read off the tensor shapes
                    (8 frames, 16 with temporal downsampling; generic data config) — unless the caller needs
                    the recipe (``need_recipe=True``: classification), which then asks for the preset.
  registry name     ``PRESET.TAG`` or a bare preset with downloadable weights (``uniformerv2 models
                    --pretrained``): the file is downloaded once (verified, cached) and loaded into the
                    entry's preset (or ``preset``), its head rows matched by the entry's class names.
An existing path always wins over a name; a string that is neither is a one-line error.
"""
from __future__ import annotations

from pathlib import Path

from .data.config import DataConfig
from .errors import CheckpointError, UserError
from .labels import canonical_name, load_labels
from .model.config import ModelConfig
from .model.presets import ARCHS, PRESETS, build_config
from .model.uniformerv2 import UniFormerV2
from .weights.download import fetch
from .weights.format import is_model_dir, read_config, read_weights
from .weights.loading import ImageWeightsError, arm_backbone, load_checkpoint, read_checkpoint
from .weights.registry import Entry, close_names, get_entry, image_entry, is_registered

RUN_SUBDIRS = ("best", "final")


def create_model(name: str, *, pretrained: str | Path | None = None, checkpoint: str | Path | None = None,
                 head: str = "auto", labels: list[str] | str | None = None, checkpoint_labels=None,
                 verbose: bool = False, **options) -> UniFormerV2:
    """Build a UniFormerV2 by arch (``uniformerv2_b16``…) or preset (``k400_b16_8x224``…) name.

    options: any :class:`ModelConfig` field (``num_classes``, ``num_frames``, ``img_size``,
    ``temporal_downsample``, ``local_mhra``, ``global_layers``, ``fusion``, ``frozen_backbone``, …).
    pretrained: an image-ViT weights file (OpenAI CLIP, open_clip, timm, Hugging Face) to arm the backbone;
        ``"clip"``: the registered CLIP file of this arch (downloaded once); or an image-weights name
        (``clip_b16.mmaction2``).
    checkpoint: a whole UniFormerV2 checkpoint, ours (model dir or file), official (``.pyth``) or MMAction2
        (``.pth``), or a registry name (``k710_b16_8x224.clip``; its class names map the head rows).
    head: "auto" (keep, or map rows by class name, else reset with a warning), "keep" or "reset".
    labels: class names of this model (a list, a shipped list name or a labels file); defaults to the
        preset's list.  checkpoint_labels: the class names of the checkpoint's head, when not standard.
    """
    if head not in ("auto", "keep", "reset"):
        raise UserError(f"head must be 'auto', 'keep' or 'reset', got {head!r}")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    if labels is not None and "num_classes" not in options:
        options["num_classes"] = len(labels)  # the class names fix the head's size
    cfg, preset = build_config(name, **options)
    data = None
    if preset is not None:
        data = preset.data_config(num_frames=cfg.num_frames, crop_size=cfg.img_size)
        if labels is None and len(load_labels(preset.labels)) == cfg.num_classes:
            labels = load_labels(preset.labels)
    model = UniFormerV2(cfg, labels=labels, preset=preset.name if preset else None, data_config=data)
    if pretrained is not None:
        model.load_report = arm_backbone(model, _image_weights(pretrained, cfg.arch), verbose=verbose)
    if checkpoint is not None:
        if not Path(checkpoint).exists():
            entry = _video_entry(lookup(checkpoint))
            checkpoint = fetch(entry)
            if checkpoint_labels is None:
                checkpoint_labels = entry_labels(entry)
        model.load_report = load_checkpoint(model, checkpoint, head=head, checkpoint_labels=checkpoint_labels,
                                            verbose=verbose)
    return model


def from_pretrained(directory, map_location="cpu", **overrides) -> UniFormerV2:
    """A model directory written by :func:`save_pretrained`, or a registry name (downloaded once, see
    :func:`load_model`).  ``overrides``: ModelConfig fields, e.g. ``num_frames=16``; no weight depends on
    the frame count."""
    name = str(directory)
    directory = Path(directory)
    if not directory.exists():
        return _load_entry(lookup(name), None, overrides).to(map_location)
    if not is_model_dir(directory):
        raise CheckpointError(f"{directory} is not a model directory (no config.json)")
    cfg = read_config(directory)
    model_cfg = ModelConfig.from_dict({**cfg["model"], **overrides})
    data = DataConfig.from_dict(cfg["data"]) if cfg.get("data") else None
    if data is not None:
        data = data.replace(num_frames=model_cfg.num_frames, crop_size=model_cfg.img_size)
    model = UniFormerV2(model_cfg, labels=cfg.get("labels"), preset=cfg.get("preset"), data_config=data)
    missing, unexpected = model.load_state_dict(read_weights(directory), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not fit the config "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model.to(map_location)


def save_pretrained(model: UniFormerV2, directory, **metadata) -> Path:
    """Write ``model`` as a model directory (``config.json`` + ``model.safetensors``); ``metadata`` is
    added to ``config.json``."""
    return model.save_pretrained(directory, **metadata)


def load_model(path: str | Path, preset: str | None = None, *, need_recipe: bool = False,
               **overrides) -> UniFormerV2:
    """A trained model from a model directory, a run directory, a weights file or a registry name (see
    the module docstring for the rules).  ``overrides``: ModelConfig fields on top of what the source says."""
    p = Path(path)
    if not p.exists():
        return _load_entry(lookup(path), preset, overrides)
    if p.is_dir() and not is_model_dir(p):
        found = next((p / sub for sub in RUN_SUBDIRS if is_model_dir(p / sub)), None)
        if found is None:
            raise UserError(f"{path}: not a model directory (config.json + model.safetensors) nor a run "
                            f"directory with {' or '.join(s + '/' for s in RUN_SUBDIRS)}")
        p = found
    if is_model_dir(p):
        if preset is not None:
            raise UserError(f"{p} is a model directory with its own config; a preset is for weight files "
                            "without one")
        return from_pretrained(p, **overrides)
    if preset is not None:
        return create_model(preset, checkpoint=p, **overrides)
    if need_recipe:
        raise UserError(f"{p} is a weights file without a config: say which preset it belongs to "
                        f"(preset=... / --preset NAME, see `uniformerv2 models`)")
    sd, _, file_labels = read_checkpoint(p)
    options = infer_options(sd)
    if file_labels is not None and len(file_labels) == options["num_classes"] \
            and not {"labels", "num_classes"} & set(overrides):
        options["labels"] = list(file_labels)  # e.g. an MMAction2 file: its rows keep their (named) order
    return create_model(options.pop("arch"), checkpoint=p, **{**options, **overrides})


# ----------------------------------------------------------------------------- weights by name
def lookup(name) -> Entry:
    """The registry entry of ``name`` (``PRESET.TAG`` or a bare prefix), checked against the presets and
    archs that exist; a string that is no name is a one-line error with the closest names."""
    name = str(name)
    if not is_registered(name):  # a missing weights file, as before names existed: a CheckpointError
        raise CheckpointError(_not_found(name))
    entry = get_entry(name)
    where = f"registry entry {entry.name} (from {entry.source})"
    if entry.is_video_model and entry.preset not in PRESETS:
        raise UserError(f"{where} names the preset {entry.preset!r}, which does not exist; see `uniformerv2 models`")
    if not entry.is_video_model and entry.arch not in ARCHS:
        raise UserError(f"{where} names the arch {entry.arch!r}, which does not exist; known: {', '.join(ARCHS)}")
    return entry


def entry_labels(entry: Entry) -> list[str]:
    """The class names of a video entry's head rows, in the file's order."""
    try:
        return load_labels(entry.labels) if isinstance(entry.labels, str) else list(entry.labels)
    except UserError as e:
        raise UserError(f"registry entry {entry.name} (from {entry.source}): {e}") from None


_FILE_SUFFIXES = (".pyth", ".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".json")


def _not_found(name: str) -> str:
    if name in PRESETS:
        return (f"{name}: no such file or directory, and no weights of this preset can be downloaded "
                f"(docs/pretrained.md): give a checkpoint file with preset={name!r} / --preset {name}")
    if name in ARCHS:
        return (f"{name}: no such file or directory; {name} is an architecture, without pretrained weights "
                f"(create_model({name!r}) builds it untrained)")
    if any(c in name for c in "/\\") or name.endswith(_FILE_SUFFIXES):
        return (f"{name}: no such file or directory (a model directory, a run directory, a checkpoint file, "
                "or a pretrained name from `uniformerv2 models --pretrained`)")
    close = close_names(name)
    hint = f"did you mean {', '.join(close)}?" if close else "see `uniformerv2 models --pretrained` for the names"
    return f"{name}: no such file or directory, nor a pretrained name; {hint}"


def _video_entry(entry: Entry) -> Entry:
    if not entry.is_video_model:
        raise ImageWeightsError(f"{entry.name} is an image-ViT file ({entry.layout}) that arms a backbone, not a "
                                f"UniFormerV2 model: pass it as pretrained={entry.name!r}")
    return entry


def _covers(file_labels: list[str], preset_labels: list[str]) -> bool:
    have = {canonical_name(c) for c in file_labels}
    return all(canonical_name(c) in have for c in preset_labels)


def _load_entry(entry: Entry, preset: str | None, overrides: dict) -> UniFormerV2:
    """A registry file loaded into its preset (or ``preset``): the head rows are matched to the preset's
    class names by the entry's label order; a head of other classes keeps its own names."""
    entry = _video_entry(entry)
    preset = preset or entry.preset
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; see `uniformerv2 models`")
    file_labels = entry_labels(entry)
    opts = dict(overrides)
    if "labels" not in opts and "num_classes" not in opts \
            and not _covers(file_labels, load_labels(PRESETS[preset].labels)):
        opts["labels"] = file_labels  # e.g. a team's own classes on a zoo architecture
    opts.setdefault("checkpoint_labels", file_labels)
    return create_model(preset, checkpoint=fetch(entry), **opts)


def _image_weights(pretrained, arch: str) -> Path:
    """A local image-ViT file as it is; ``"clip"`` or an image-weights name downloaded (verified, cached)."""
    if Path(pretrained).exists():
        return Path(pretrained)
    name = str(pretrained)
    if name == "clip":
        try:
            entry = image_entry(arch)
        except UserError:
            raise UserError(f"pretrained='clip': no CLIP weights are registered for {arch} (there are for "
                            "uniformerv2_b16, uniformerv2_l14, uniformerv2_l14_336); give an image-ViT file") from None
    else:
        entry = lookup(name)
        if entry.is_video_model:
            raise UserError(f"{name} is a whole UniFormerV2 model, not image weights: pass it as checkpoint=")
    return fetch(entry)


def infer_options(sd: dict) -> dict:
    """Model options read off a state dict's shapes (our names), for checkpoints without a config.

    Frame count is not stored in any weight: 8 (16 with temporal downsampling) is assumed, as the zoo.
    Global blocks are assumed to sit on the last layers, as in every official recipe.
    """
    stem = sd["stem.weight"]
    width, patch, kt = stem.shape[0], stem.shape[-1], stem.shape[2]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    n_global = len({k.split(".")[1] for k in sd if k.startswith("global_blocks.")})
    grid = int(round((sd["pos_embed"].shape[0] - 1) ** 0.5))
    local = ("double" if "blocks.0.lmhra2.down.weight" in sd
             else "single" if "blocks.0.lmhra1.down.weight" in sd else "none")
    # heads cannot be read off the weights: take them from the arch of that shape (official: 64 per head)
    same = [n for n, a in ARCHS.items() if (a["embed_dim"], a["depth"], a["patch_size"]) == (width, depth, patch)]
    arch = next((n for n in same if ARCHS[n]["img_size"] == grid * patch), same[0] if same else "uniformerv2_b16")
    heads = ARCHS[arch]["num_heads"] if same else max(1, width // 64)
    return dict(arch=arch, embed_dim=width, depth=depth, num_heads=heads, patch_size=patch,
                img_size=grid * patch, num_classes=sd["head.fc.weight"].shape[0], temporal_downsample=kt > 1,
                num_frames=16 if kt > 1 else 8, local_mhra=local, global_layers=list(range(depth - n_global, depth)),
                frozen_backbone="balance" not in sd)
