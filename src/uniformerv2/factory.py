"""One way to build, load, describe and save a model: ``create_model``, ``load_model``, ``from_pretrained``,
``save_pretrained``, ``model_for_config`` (what a training config describes), ``describe`` (what a source
holds, without building a model or downloading).  Every entry point (``VideoClassifier``, the trainer, eval,
finetune, export, convert, info) goes through here; ``locate`` is the one rule from a string to a source.

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

from dataclasses import dataclass
from pathlib import Path

from .data.config import DataConfig
from .errors import CheckpointError, UserError
from .labels import canonical_name, load_labels
from .model.config import ModelConfig
from .model.presets import ARCHS, PRESETS, build_config
from .model.uniformerv2 import UniFormerV2
from .weights.download import cache_path, fetch, is_cached
from .weights.format import WEIGHTS, is_model_dir, read_config, read_weights
from .weights.io import load_state_dict, safetensors_shapes, sniff
from .weights.loading import ImageWeightsError, arm_backbone, load_checkpoint, read_checkpoint
from .weights.registry import Entry, close_names, get_entry, image_entry, is_registered
from .weights.vit import to_clip_visual

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
    p = locate(path)
    if isinstance(p, Entry):
        return _load_entry(p, preset, overrides)
    if is_model_dir(p):
        if preset is not None:
            raise UserError(f"{p} is a model directory with its own config; a preset is for weight files "
                            "without one")
        return from_pretrained(p, **overrides)
    sniff(p)  # a video, a text or HTML file... given as weights: say so, whatever else was asked
    if preset is not None:
        return create_model(preset, checkpoint=p, **overrides)
    if need_recipe:
        read_checkpoint(p)  # a damaged file, or image weights, says so first
        raise UserError(f"{p} is a weights file without a config: say which preset it belongs to "
                        f"(preset=... / --preset NAME, see `uniformerv2 models`)")
    sd, _, file_labels = read_checkpoint(p)
    options = infer_options(sd)
    if file_labels is not None and len(file_labels) == options["num_classes"] \
            and not {"labels", "num_classes"} & set(overrides):
        options["labels"] = list(file_labels)  # e.g. an MMAction2 file: its rows keep their (named) order
    return create_model(options.pop("arch"), checkpoint=p, **{**options, **overrides})


def locate(spec: str | Path) -> Path | Entry:
    """Where a model string points: a model directory (a run directory resolved to its ``best/``, else its
    ``final/``), a weights file, or the registry entry of a name.  An existing path always wins over a name; a
    string that is neither is a one-line error with the closest names."""
    p = Path(spec)
    if not p.exists():
        return lookup(spec)
    if p.is_dir() and not is_model_dir(p):
        found = next((p / sub for sub in RUN_SUBDIRS if is_model_dir(p / sub)), None)
        if found is None:
            raise UserError(f"{spec}: not a model directory (config.json + model.safetensors) nor a run "
                            f"directory with {' or '.join(s + '/' for s in RUN_SUBDIRS)}")
        return found
    return p


# ----------------------------------------------------------------------------- a training config's model
def model_for_config(cfg: dict, model: str | Path | None = None) -> UniFormerV2:
    """The model of a training config (``engine.config`` schema), with the config's ``data.pipeline`` applied
    to its data config.

    model None: built as ``model.*`` says (preset or arch + options, ``pretrained`` / ``checkpoint`` weights,
        ``labels``, a labels file found beside the data lists): what training starts from.
    model given: that trained model (:func:`load_model`): a model directory, run directory or registry name
        brings its own architecture; a weights file, which carries no config, is loaded into ``model.preset``
        with ``model.options``.
    """
    m = cfg["model"]
    if model is None:
        labels = m["labels"]
        if isinstance(labels, str) and (Path(cfg["data"]["root"]) / labels).is_file():
            labels = str(Path(cfg["data"]["root"]) / labels)  # a labels file beside the data lists
        built = create_model(m["preset"], pretrained=m["pretrained"], checkpoint=m["checkpoint"], head=m["head"],
                             labels=labels, **m["options"])
    elif Path(model).is_file():
        built = load_model(model, m["preset"], **m["options"])
    else:
        built = load_model(model)
    return apply_pipeline(built, cfg["data"]["pipeline"])


def apply_pipeline(model: UniFormerV2, pipeline: dict) -> UniFormerV2:
    """``pipeline`` (DataConfig fields, a config's ``data.pipeline``) over the model's data config."""
    model.data_config = model.data_config.replace(**pipeline)
    return model


# ----------------------------------------------------------------------------- describing a source
@dataclass
class ModelSource:
    """What a model directory, run directory, weights file or registry name holds, read without building a
    model and without downloading: a whole video model (its architecture) or image-ViT weights (to arm an
    arch's backbone)."""
    spec: str                      # the registry name, or the local path (a run directory: its model directory)
    start: str                     # "video" | "image"
    arch: str | None               # None: image weights whose shapes match no arch
    model: dict | None             # ModelConfig fields of a video model (the model it loads as)
    data: dict | None = None       # its DataConfig fields, where known
    labels: list | None = None     # class names of the model's head rows, where known
    format: str = ""               # "model_dir", "official", "uniformerv2", "mmaction2"; image: "clip", ...
    preset: str | None = None      # the preset it belongs to, where known
    entry: Entry | None = None     # the registry entry of a name
    parameters: int | None = None  # tensor elements, where counted without building (read tensors or a header)
    backbone: dict | None = None   # image weights: embed_dim, depth, patch_size, img_size of the ViT


def describe(spec: str | Path, *, need_arch: bool = False) -> ModelSource:
    """What ``spec`` holds (:func:`locate` finds it): a model directory's config, a weights file's layout and
    shapes, or a registry entry's preset and classes (nothing is downloaded).  ``need_arch``: refuse image
    weights whose shapes match no arch."""
    where = locate(spec)
    if isinstance(where, Entry):
        return _describe_entry(str(spec), where)
    if is_model_dir(where):
        cfg = read_config(where)
        return ModelSource(str(where), "video", cfg["model"]["arch"], cfg["model"], cfg.get("data"),
                           labels=cfg.get("labels"), format="model_dir", preset=cfg.get("preset"),
                           parameters=_count(safetensors_shapes(where / WEIGHTS)))
    try:
        sd, fmt, labels = read_checkpoint(where)
    except ImageWeightsError:
        visual, kind = to_clip_visual(load_state_dict(where))
        dims = vit_dims(visual)
        arch = match_arch(**dims)
        if arch is None and need_arch:
            raise UserError(f"{where}: an image ViT of width {dims['embed_dim']}, depth {dims['depth']}, patch "
                            f"{dims['patch_size']} matches no arch (uniformerv2 models)") from None
        return ModelSource(str(where), "image", arch, None, format=kind, backbone=dims,
                           parameters=_count({k: t.shape for k, t in visual.items()}))
    opts = infer_options(sd)
    cfg, _ = build_config(opts.pop("arch"), **opts)
    return ModelSource(str(where), "video", cfg.arch, cfg.to_dict(), None,
                       labels=list(labels) if labels is not None and len(labels) == cfg.num_classes else None,
                       format=fmt, parameters=_count({k: t.shape for k, t in sd.items()}))


def _describe_entry(spec: str, entry: Entry) -> ModelSource:
    if not entry.is_video_model:
        a = ARCHS[entry.arch]
        dims = {k: a[k] for k in ("embed_dim", "depth", "patch_size", "img_size")}
        return ModelSource(spec, "image", entry.arch, None, format=entry.layout, entry=entry, backbone=dims)
    preset = PRESETS[entry.preset]
    file_labels, preset_labels = entry_labels(entry), load_labels(preset.labels)
    if _covers(file_labels, preset_labels):  # loaded as the preset's model, its rows matched by name
        cfg, _ = build_config(entry.preset)
        labels = preset_labels if len(preset_labels) == cfg.num_classes else None
    else:  # a head of other classes keeps its own names (as _load_entry loads it)
        cfg, _ = build_config(entry.preset, num_classes=len(file_labels))
        labels = file_labels
    data = preset.data_config(num_frames=cfg.num_frames, crop_size=cfg.img_size).to_dict()
    cached = cache_path(entry)
    header = safetensors_shapes(cached) if cached.suffix == ".safetensors" and is_cached(entry) else None
    return ModelSource(spec, "video", cfg.arch, cfg.to_dict(), data, labels=labels, format=entry.layout,
                       preset=entry.preset, entry=entry, parameters=_count(header))


def fetch_source(source: ModelSource) -> ModelSource:
    """Download (verified, cached) the file of a registry name, so that what follows works offline; a local
    source is left as it is."""
    if source.entry is not None:
        fetch(source.entry)
    return source


def parameter_count(source: ModelSource) -> int | None:
    """The tensor elements of a source: counted where its tensors or header were read, else those of its
    video model built on the meta device (no memory, no weights); None for image weights not read."""
    if source.parameters is not None or source.model is None:
        return source.parameters
    import torch

    with torch.device("meta"):
        model = UniFormerV2(ModelConfig.from_dict(source.model))
    return _count({k: t.shape for k, t in model.state_dict().items()})


def _count(shapes: dict | None) -> int | None:
    """Elements of the named tensors, batch-norm statistics left out."""
    if shapes is None:
        return None
    total = 0
    for name, shape in shapes.items():
        if "running" in name or "num_batches" in name:
            continue
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    return total


def vit_dims(visual: dict) -> dict:
    """Width, depth, patch and resolution of an image ViT in the CLIP visual layout."""
    width, patch = visual["conv1.weight"].shape[0], visual["conv1.weight"].shape[-1]
    depth = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    grid = int(round((visual["positional_embedding"].shape[0] - 1) ** 0.5))
    return dict(embed_dim=width, depth=depth, patch_size=patch, img_size=grid * patch)


def match_arch(embed_dim: int, depth: int, patch_size: int, img_size: int) -> str | None:
    """The arch with this ViT's width, depth and patch (of the same resolution where there are several)."""
    same = [n for n, a in ARCHS.items() if (a["embed_dim"], a["depth"], a["patch_size"]) == (embed_dim, depth,
                                                                                               patch_size)]
    return next((n for n in same if ARCHS[n]["img_size"] == img_size), same[0] if same else None)


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
    local = ("double" if any(k.startswith("blocks.0.lmhra2.") for k in sd)
             else "single" if any(k.startswith("blocks.0.lmhra1.") for k in sd) else "none")
    # the local operator, by the names of its tensors (model/layers.py: LocalMHRA, TemporalMHSA, STAdapter)
    local_op = ("temporal_mhsa" if "blocks.0.lmhra1.attn.qkv.weight" in sd
                else "st_adapter" if "blocks.0.lmhra1.conv.weight" in sd else "mhra")
    # heads cannot be read off the weights: take them from the arch of that shape (official: 64 per head)
    arch = match_arch(width, depth, patch, grid * patch)
    heads = ARCHS[arch]["num_heads"] if arch else max(1, width // 64)
    arch = arch or "uniformerv2_b16"
    return dict(arch=arch, embed_dim=width, depth=depth, num_heads=heads, patch_size=patch,
                img_size=grid * patch, num_classes=sd["head.fc.weight"].shape[0], temporal_downsample=kt > 1,
                num_frames=16 if kt > 1 else 8, local_mhra=local, local_op=local_op,
                global_layers=list(range(depth - n_global, depth)),
                dpe=n_global == 0 or any(k.startswith("dpe.") for k in sd), frozen_backbone="balance" not in sd)
