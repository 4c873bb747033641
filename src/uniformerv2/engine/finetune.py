"""Fine-tune on your own videos in one call: ``finetune(data, output, ...) -> summary dict``.

The steps, top to bottom (``uniformerv2 finetune`` is a thin layer over this):

1. Prepare the data (``engine.prepare``): scan every video, leave the undecodable ones out, refuse a class
   with too few usable videos, split train/val per class with a fixed seed; write ``train.csv``, ``val.csv``,
   ``labels.txt`` and ``scan.json`` to the run directory.
2. Choose the starting weights and the model by ``kind`` (the maintainers' advice, docs/finetune.md):
   ``scene`` (default): the Kinetics-710 B/16 model, global UniBlocks only, Kinetics augmentation;
   ``motion``: CLIP ViT-B/16 armed with local + global UniBlocks and temporal downsampling, no flip,
   Something-Something augmentation. ``weights`` (``--from``) replaces the starting weights: a whole video
   model brings its own architecture, image-ViT weights are armed with the kind's design.
3. Build the starting model once (weights loaded, head re-initialised for the user's classes with their
   names, at a small scale, ``frozen_backbone`` applied) and save it as ``init/``; the recipe points at it.
4. Resolve the recipe: the official run that matches the starting point (a shipped config, ``RUNS``; the
   kind's design, drop paths, augmentation and test views are those of its config's preset) gives the LR at
   its global batch, scaled *linearly* to the actual global batch (the maintainers' rule), its epochs, warmup
   and cosine; bf16 on a GPU / fp32 on a CPU; activation checkpointing of as many blocks as the estimated
   memory needs. ``key=value`` overrides go on top. The result is a normal ``train`` recipe: ``config.yaml``.
5. Train (``engine.train``; under torchrun every process runs this function), then evaluate the best
   weights on val with the model's test views (``val/``: metrics.json, per_class.csv, confusion.png,
   predictions.json) and print where the model is, its val accuracy and the ``predict`` command.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError, UserError
from ..factory import ModelSource, apply_pipeline, describe, fetch_source
from ..fileio import atomic_write_json, atomic_write_text
from . import distributed as dist
from .config import DEFAULTS, dump, load_config, merge, parse_overrides
from .recipes import Run, official_run
from .schedule import scaled_lr

HEAD_INIT_STD = 2e-5
GiB = 2**30


# The official run that matches each starting point (docs/finetune.md has the table and the reasoning): a shipped
# config (configs/NAME.yaml), whose LR at its global batch, epochs, warmup, LR floor, weight decay and clipping
# the recipe takes (engine.recipes.official_run).
RUNS = {
    ("video", "base"): "mit_b16_8x224",        # MiT B/16 from the Kinetics model, a new head
    ("video", "large"): "mit_l14_8x224",       # MiT L/14 from the Kinetics model, a new head
    ("image", "scene", "base"): "k400_b16_8x224_clip",
    ("image", "scene", "large"): "k710_l14_8x224_clip",
    ("image", "motion", "base"): "ssv2_b16_16x224",
    ("image", "motion", "large"): "ssv2_l14_16x224",
}
# Frozen backbone: the LR of the official frozen family (global blocks trained / untrained at the start).
FROZEN_RUNS = {
    "video": "k400_frozen_l14_8x336_from_k710",  # from the frozen K710 model
    "image": "k400_frozen_l14_8x336_clip",       # from CLIP
}


@dataclass(frozen=True)
class Kind:
    """A kind of data: the default starting weights, and the official run whose model and data recipe (its
    config's preset) gives the design of a backbone armed from image weights, the drop paths, the augmentation and
    the test views."""
    weights: str          # registry name of the default starting weights
    config: str           # the shipped config of that run (the kind's run from CLIP at B/16)
    n_global: Callable    # depth -> global UniBlocks (after the last layers), for an image-weights start
    augmentation: str

    @property
    def design(self) -> dict:
        """ModelConfig options for a backbone armed from image weights."""
        return {key: _recipe_of(self.config)[0][key] for key in ("local_mhra", "temporal_downsample", "num_frames")}

    @property
    def regularise(self) -> dict:
        """Drop paths of the official recipe."""
        return {key: _recipe_of(self.config)[0][key] for key in ("drop_path_rate", "global_drop_path_rate")}

    @property
    def pipeline(self) -> dict:
        """DataConfig fields: augmentation and test views."""
        return {key: _recipe_of(self.config)[1][key]
                for key in ("flip", "rand_augment", "repeated_aug", "test_clips", "test_crops")}


def _recipe_of(config: str) -> tuple[dict, dict]:
    """(ModelConfig fields, DataConfig fields) of the preset a shipped config trains."""
    from ..model.presets import build_config

    cfg, preset = build_config(load_config(config)["model"]["preset"])
    return cfg.to_dict(), preset.data_config().to_dict()


KINDS = {
    "scene": Kind("k710_b16_8x224.clip", RUNS[("image", "scene", "base")], lambda depth: min(4, depth),
                  "Kinetics augmentation (RandAugment, random resized crop, flip)"),
    "motion": Kind("clip_b16.openai", RUNS[("image", "motion", "base")], lambda depth: max(1, round(depth * 2 / 3)),
                   "Something-Something augmentation (RandAugment, random resized crop, no flip, 2 clips per "
                   "video and step)"),
}
FORBIDDEN_OVERRIDES = ("model.preset", "model.checkpoint", "model.pretrained", "model.head", "model.labels",
                       "data.root", "data.train", "data.val")


# ----------------------------------------------------------------------------------------------- the source
Source = ModelSource  # spec, start ("video" | "image"), arch, model (ModelConfig fields), data (DataConfig fields)


def resolve_source(spec: str) -> Source:
    """The starting weights, as ``factory.describe`` reads them (a registry name, a model or run directory, a
    checkpoint or image-ViT file; nothing is downloaded); image weights must match an arch."""
    return describe(spec, need_arch=True)


def size_class(embed_dim: int) -> str:
    return "large" if embed_dim >= 1024 else "base"


# ----------------------------------------------------------------------------------------------- the recipe
def model_options(source: Source, kind: str, frozen: bool, num_classes: int) -> tuple[str, dict]:
    """(arch, ModelConfig options over the arch's defaults) of the model to fine-tune."""
    from ..model.presets import build_config

    k = KINDS[kind]
    base = build_config(source.arch)[0].to_dict()
    if source.start == "video":
        full = {key: v for key, v in source.model.items() if key not in ("arch", "num_classes")}
    else:  # arm the image ViT with the kind's design
        depth = base["depth"]
        n_global = k.n_global(depth)  # Kinetics: the last 4 layers; SSv2: the last 2/3 (8 of 12, 16 of 24)
        full = {**k.design, "global_layers": list(range(depth - n_global, depth))}
        if frozen:  # a frozen local MHRA would stay the identity it starts as: leave it out
            full["local_mhra"] = "none"
    full.update(k.regularise, frozen_backbone=bool(frozen), num_classes=num_classes)
    options = {key: v for key, v in full.items() if key == "num_classes" or base[key] != v}
    if "depth" in options:  # build_config would put the global blocks on the last layers otherwise
        options["global_layers"] = full["global_layers"]
    return source.arch, options


def data_pipeline(source: Source, kind: str) -> dict:
    """DataConfig fields of the run: the kind's augmentation and views; the source's input convention."""
    from ..data.config import DataConfig

    known = source.data or {}
    default = DataConfig()
    conv = {key: known.get(key, getattr(default, key)) for key in ("mean", "std", "bgr")}
    recipe = _recipe_of(KINDS[kind].config)[1]
    return {**KINDS[kind].pipeline, **conv, "sampling": recipe["sampling"], "crop_scale": recipe["crop_scale"]}


def recipe_run(source: Source, kind: str, embed_dim: int, frozen: bool) -> tuple[Run, Run]:
    """(the run giving the schedule, the run giving the LR at its batch)."""
    size = size_class(embed_dim)
    sched = official_run(RUNS[("video", size)] if source.start == "video" else RUNS[("image", kind, size)])
    return sched, (official_run(FROZEN_RUNS[source.start]) if frozen else sched)


def default_batch(n_train: int, world: int, device: torch.device, embed_dim: int) -> int:
    """Per process 16 clips on a GPU (8 for L/14), 4 on a CPU; at most a quarter of the training set (at least
    4 steps per epoch); a multiple of the process count."""
    per = (16 if size_class(embed_dim) == "base" else 8) if device.type == "cuda" else 4
    cap = max(world, (n_train // 4) // world * world)
    return min(per * world, cap)


def activation_bytes(cfg, *, frozen: bool, fp32: bool, checkpointed: int = 0) -> float:
    """Estimated activations kept for backward, per training clip.

    Per token and channel and backbone layer: 36 bytes in bf16 (weighed against the measured 23.8 GiB of a B/16
    training step at batch 32, docs and reference benchmarks: attention through SDPA, lean MLP), x1.5 with
    local MHRA; a checkpointed layer keeps only its inputs (4 bytes, 16 with local MHRA) plus one layer
    recomputed at a time. A frozen backbone keeps nothing: only the global blocks (12 bytes each)."""
    tokens = cfg.time_steps * cfg.tokens_per_frame * cfg.embed_dim
    scale = 2.0 if fp32 else 1.0
    if frozen:
        return scale * tokens * 12 * max(1, len(cfg.global_layers))
    local = cfg.local_mhra != "none"
    full, kept = 36 * (1.5 if local else 1.0), 16 if local else 4
    n = min(int(checkpointed), cfg.depth)
    return scale * tokens * ((cfg.depth - n) * full + n * kept + (full if n else 0))


def static_bytes(model) -> float:
    """Weights, gradients and AdamW moments of the trainable parameters, weights of the frozen ones, an autocast
    copy of all, and 1 GiB for the CUDA context and workspaces."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return 16 * trainable + 4 * frozen + 2 * (trainable + frozen) + GiB


def memory_plan(cfg, *, frozen: bool, fp32: bool, videos: int, clips_per_video: int, static: float,
                budget: float | None) -> dict:
    """Activation checkpointing (blocks) and accumulation (micro-steps) for ``videos`` videos per process and
    step: none if the estimate fits ``budget``, else the fewest checkpointed blocks that fit, else the
    micro-batch halved (accumulation doubled), and again."""
    def need(accum, n):
        clips = videos // accum * clips_per_video
        return static + clips * activation_bytes(cfg, frozen=frozen, fp32=fp32, checkpointed=n)

    if budget is None:
        return {"grad_checkpointing": 0, "accum": 1, "estimate": need(1, 0), "budget": None, "fits": None}
    accum = 1
    while True:
        for n in ([0] if frozen else range(cfg.depth + 1)):
            if need(accum, n) <= budget:
                return {"grad_checkpointing": n, "accum": accum, "estimate": need(accum, n), "budget": budget,
                        "fits": True}
        if videos % (accum * 2):
            n = 0 if frozen else cfg.depth
            return {"grad_checkpointing": n, "accum": accum, "estimate": need(accum, n), "budget": budget,
                    "fits": False}
        accum *= 2


def memory_budget(device: torch.device) -> float | None:
    """90 % of the free memory of this process's GPU, or of the available RAM (``MemAvailable``) shared by this
    node's processes; None when it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.9 * free
    avail = None
    try:
        with open("/proc/meminfo") as f:
            avail = next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")), None)
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return 0.9 * avail / max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def training_precision(device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # fp16: GradScaler, non-finite steps skipped


# ----------------------------------------------------------------------------------------------- the start
def build_start_model(source: Source, arch: str, options: dict, labels: list[str], seed: int):
    """The starting model: the source's weights, the frozen variant applied, and a new head for ``labels`` drawn
    at a small scale (std 2e-5, bias 0, as MAE / BEiT / VideoMAE fine-tuning start their heads): its first
    predictions are uniform, so the small LRs of the fine-tuning recipes move it towards the data instead of
    first undoing a random head; it is not zero, so gradients reach a query path that starts at zero (the
    frozen variant armed from image weights)."""
    from ..factory import create_model

    torch.manual_seed(seed)  # the new global blocks of an image-weights start
    if source.start == "image":
        model = create_model(arch, pretrained=source.spec, labels=labels, **options)
    else:
        src_frozen = bool(source.model.get("frozen_backbone", False))
        if src_frozen == bool(options.get("frozen_backbone", False)):
            model = create_model(arch, checkpoint=source.spec, head="reset", labels=labels, **options)
        else:  # the frozen variant has no `balance` (the query alone feeds the head): move the rest over
            full = create_model(arch, checkpoint=source.spec, head="reset", labels=labels,
                                **{**options, "frozen_backbone": src_frozen})
            model = create_model(arch, labels=labels, **options)
            sd = {k: v for k, v in full.state_dict().items() if k != "balance"}
            missing, unexpected = model.load_state_dict(sd, strict=False)
            assert not unexpected and set(missing) <= {"balance"}, (missing, unexpected)
            model.load_report = full.load_report
    with torch.no_grad():
        model.head.fc.weight.normal_(0.0, HEAD_INIT_STD)
        model.head.fc.bias.zero_()
    return model


# ----------------------------------------------------------------------------------------------- planning
def check_overrides(overrides) -> dict:
    """``key=value`` strings (or a nested dict) as a nested dict, refusing the keys finetune sets itself, keys
    the config does not have and values it does not take (checked over the defaults: before any work)."""
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    bad = [k for k in FORBIDDEN_OVERRIDES if _has(over, k)]
    if bad:
        raise UserError(f"{bad[0]} is set by finetune (use --from and the data arguments), not by an override")
    load_config(None, over)
    return over


def _resolve(spec: str) -> Source:
    """The starting weights of ``--from``; a preset with nothing to download is answered in finetune's terms."""
    from ..model.presets import PRESETS

    try:
        return resolve_source(spec)
    except CheckpointError:
        if spec in PRESETS and not Path(spec).exists():
            raise UserError(f"{spec} is a preset with no weights to download: give --from its weights file (a "
                            "checkpoint: the architecture is read from it), a model or run directory, or a "
                            "pretrained name (uniformerv2 models --pretrained)") from None
        raise


def plan_run(prep, out: Path, source: Source, over: dict, *, kind: str, frozen: bool, epochs: int | None,
             batch_size: int | None, lr: float | None, seed: int, device: torch.device, world: int,
             workers: int | None, progress: bool = True) -> tuple[dict, list[str], dict]:
    """(resolved train config, the lines that say what was chosen, facts for finetune.json); writes ``init/``."""
    from ..model.presets import build_config

    arch, options = model_options(source, kind, frozen, len(prep.classes))
    pipeline = data_pipeline(source, kind)

    embed = build_config(arch, **options)[0].embed_dim
    sched, lr_run = recipe_run(source, kind, embed, frozen)
    batch = batch_size or default_batch(len(prep.train), world, device, embed)
    n_epochs = epochs or sched.epochs
    cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cfg = {
        "seed": seed,
        "model": {"preset": arch, "options": options, "pretrained": None, "checkpoint": str((out / "init").resolve()),
                  "head": "keep", "labels": str((out / "labels.txt").resolve())},
        # data.test: the val list too (the split has no test part), so that `uniformerv2 eval --config` finds
        # one; `train` here leaves it out (finetune evaluates the kept weights on val itself, in val/)
        "data": {"root": prep.root, "train": str((out / "train.csv").resolve()),
                 "val": str((out / "val.csv").resolve()), "test": str((out / "val.csv").resolve()),
                 "num_workers": workers if workers is not None else max(0, min(8, cpus // local - 1)),
                 "pipeline": pipeline},
        "train": {"epochs": n_epochs, "batch_size": batch, "accum_steps": 1,
                  "lr": lr if lr is not None else lr_run.lr, "lr_scaling": "none" if lr is not None else "linear",
                  "lr_ref_batch": lr_run.batch, "warmup_epochs": round(sched.warmup * n_epochs / sched.epochs, 3),
                  "weight_decay": lr_run.weight_decay, "layer_decay": None, "clip_grad": lr_run.clip_grad,
                  "precision": training_precision(device), "grad_checkpointing": 0, "eval_every": 1,
                  "keep_last": 1, "device": device.type, **({} if progress else {"progress": False})},
        "eval": {"test_clips": pipeline["test_clips"], "test_crops": pipeline["test_crops"]},
    }
    cfg = merge(merge(DEFAULTS, cfg), over)  # the schema's defaults, the recipe, the overrides
    cfg["data"]["pipeline"] = {**pipeline, **cfg["data"]["pipeline"]}

    # the starting model (with any model.options override), then what memory it needs
    model = build_start_model(source, arch, cfg["model"]["options"], prep.classes, seed)
    t = cfg["train"]
    if t["batch_size"] % world:
        raise UserError(f"the global batch {t['batch_size']} is not a multiple of the {world} processes")
    repeats = model.data_config.replace(**cfg["data"]["pipeline"]).repeated_aug
    mem = memory_plan(model.cfg, frozen=model.cfg.frozen_backbone, fp32=t["precision"] == "fp32",
                      videos=t["batch_size"] // world, clips_per_video=repeats, static=static_bytes(model),
                      budget=memory_budget(device))
    if not _has(over, "train.grad_checkpointing"):
        t["grad_checkpointing"] = mem["grad_checkpointing"]
    if not _has(over, "train.accum_steps"):
        t["accum_steps"] = mem["accum"]
    # the LR of the run at the actual global batch, linear in it; the run's warmup start and floor keep their ratio
    peak = scaled_lr(t["lr"], t["batch_size"], t["lr_scaling"], t["lr_ref_batch"])
    for key in ("min_lr", "warmup_start_lr"):
        if not _has(over, f"train.{key}"):
            t[key] = peak * getattr(lr_run, key) / lr_run.lr
    cfg = load_config(cfg)  # the defaults filled in and every value checked, as `train` will read it

    apply_pipeline(model, cfg["data"]["pipeline"])
    model.save_pretrained(out / "init", finetune_start={"weights": source.spec, "kind": kind,
                                                        "load": model.load_report.summary() if model.load_report
                                                        else None})
    notes = _notes(source, kind, frozen, cfg, sched, lr_run, peak, mem, model, lr is not None)
    facts = {"weights": source.spec, "start": source.start, "kind": kind, "frozen_backbone": frozen,
             "schedule_run": sched.name, "lr_run": lr_run.name, "lr_rule": cfg["train"]["lr_scaling"],
             "peak_lr": peak, "memory": {k: v for k, v in mem.items()}, "arch": arch}
    return cfg, notes, facts


def _has(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _notes(source, kind, frozen, cfg, sched, lr_run, peak, mem, model, user_lr) -> list[str]:
    t, m, p = cfg["train"], model.cfg, cfg["data"]["pipeline"]
    what = ("a video model: its architecture, a new head" if source.start == "video"
            else f"image ViT weights armed as {source.arch}")
    blocks = (f"{'local + global' if m.local_mhra != 'none' else 'global'} UniBlocks (global after layers "
              f"{m.global_layers[0]}-{m.global_layers[-1]})" if m.global_layers else "no global UniBlocks")
    lines = [f"start: {source.spec} ({what})" + ("; backbone frozen: global blocks, query and head train"
                                                 if frozen else ""),
             f"kind: {kind}: {blocks}{', temporal downsampling' if m.temporal_downsample else ''}, "
             f"{m.num_frames} frames; {KINDS[kind].augmentation}; {p['test_clips']}x{p['test_crops']} test views"]
    if user_lr:
        lines.append(f"lr: {t['lr']:g} as given (no scaling)")
    else:
        lines.append(f"lr: {lr_run.lr:g} at batch {lr_run.batch} (config {lr_run.name}), linear in the global batch: "
                     f"x {t['batch_size']}/{lr_run.batch} = {peak:.3g}")
    lines.append(f"schedule: {t['epochs']} epochs ({sched.name}: {sched.epochs}), warmup {t['warmup_epochs']:g} "
                 f"from {t['warmup_start_lr']:.3g}, cosine to {t['min_lr']:.3g}; AdamW wd {t['weight_decay']:g}, "
                 f"clip {t['clip_grad']:g}, no layer-wise decay (none in the official recipe)")
    ckpt = m.depth if t["grad_checkpointing"] is True else t["grad_checkpointing"]
    budget = f" of {mem['budget'] / GiB:.1f} GiB free" if mem.get("budget") else ""
    lines.append(f"batch: {t['batch_size']} videos per step ({t['accum_steps']} micro-step(s)); {t['precision']} on "
                 f"{t['device']}; activation checkpointing: {ckpt} of {m.depth} blocks (estimated "
                 f"{mem['estimate'] / GiB:.1f} GiB per process{budget}"
                 f"{'; over it even so' if mem['fits'] is False else ''})")
    return lines


# ----------------------------------------------------------------------------------------------- the run
def finetune(data, output, *, weights: str | None = None, kind: str = "scene", epochs: int | None = None,
             frozen_backbone: bool = False, batch_size: int | None = None, lr: float | None = None,
             val=None, labels=None, root=None, val_fraction: float = 0.2, min_videos: int = 2,
             skip_small_classes: bool = False, seed: int = 6666, device: str = "auto", workers: int | None = None,
             resume: bool = False, overrides=None, progress: bool = True) -> dict:
    """Fine-tune on ``data`` (class folders or a list file) into the run directory ``output``; returns the
    run summary (model directory, val metrics, what was chosen). See the module docstring and docs/finetune.md.

    weights: starting weights (registry name, model/run directory, checkpoint or image-ViT file); default by
        ``kind``. kind: "scene" or "motion". epochs, batch_size (global), lr (used as given): over the recipe.
    val / labels / root: a val list, the labels file and the root of a list file's relative paths.
    overrides: ``key=value`` strings or a nested dict over the resolved config (as ``uniformerv2 train``).
    """
    if kind not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise UserError(f"{name} must be a positive integer, got {v!r}")
    if lr is not None and not lr > 0:
        raise UserError(f"lr must be positive, got {lr!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise UserError(f"workers must be 0 or more, got {workers!r}")
    overrides = check_overrides(overrides)  # every argument is checked before the scan
    out = Path(output)
    has_run = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*.pt"))
    if resume and not (out / "config.yaml").is_file():
        raise UserError(f"{out} holds no fine-tuning run to resume (no config.yaml)")
    if has_run and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --output")
    info = dist.setup(device)
    main = info.is_main
    try:
        if resume:
            cfg = load_config(out / "config.yaml")
            facts = json.loads((out / "finetune.json").read_text()) if (out / "finetune.json").is_file() else {}
        else:
            cfg, facts = _prepare_everywhere(info, data, out, dict(
                weights=weights, kind=kind, frozen=frozen_backbone, epochs=epochs, batch_size=batch_size, lr=lr,
                seed=seed, world=info.world_size, workers=workers, overrides=overrides, progress=progress), dict(
                val=val, labels=labels, root=root, val_fraction=val_fraction, seed=seed, min_videos=min_videos,
                skip_small_classes=skip_small_classes, progress=progress and main))
        from .train import train

        # without data.test: the kept weights are evaluated on val below (val/), not the best ones in test/
        trained = train(merge(cfg, {"data": {"test": None}}), out, resume=resume)  # leaves the process group
    finally:
        dist.cleanup()
    summary = {"output_dir": str(out), "train": trained, **facts}
    if not main:
        return summary
    summary.update(_final_eval(cfg, out, info.device, progress))
    record = {k: v for k, v in summary.items() if k != "train"}
    record["train"] = {k: v for k, v in trained.items() if k != "test"}
    atomic_write_json(out / "finetune.json", record, default=str)
    _annotate(out / "config.yaml", cfg, facts.get("notes", []))
    v = summary["val"]
    print(f"model: {summary['model_dir']}")
    print(f"val accuracy: top-1 {v['top1']:.2f}%, top-5 {v['top5']:.2f}%, mean class accuracy "
          f"{v['mean_class_accuracy']:.2f}% ({v['count']} videos, {v['views']} views; details in {out / 'val'})")
    print(f"next: {summary['predict_command']}")
    return summary


def _prepare_everywhere(info, data, out: Path, plan_args: dict, prep_args: dict) -> tuple[dict, dict]:
    """Rank 0 prepares the data and the recipe; every rank gets the same config (or the same error)."""
    if not info.enabled:
        payload = _prepare(data, out, info.device, plan_args, prep_args)
        return payload["cfg"], payload["facts"]
    payload = None
    if info.is_main:
        try:
            payload = _prepare(data, out, info.device, plan_args, prep_args)
        except UserError as e:
            payload = {"error": str(e)}
        except BaseException as e:  # never leave the other ranks waiting
            dist.all_gather_objects({"error": f"preparation failed on rank 0: {type(e).__name__}: {e}"})
            raise
    payload = dist.all_gather_objects(payload)[0]
    if "error" in payload:
        raise UserError(payload["error"])
    return payload["cfg"], payload["facts"]


def _prepare(data, out: Path, device, plan_args: dict, prep_args: dict) -> dict:
    from .prepare import prepare_videos, write_lists

    # everything that can be checked without reading the videos first: a wrong name fails in a second
    over = check_overrides(plan_args.pop("overrides"))
    source = _resolve(plan_args.pop("weights") or KINDS[plan_args["kind"]].weights)
    if not Path(data).exists():
        raise UserError(f"{data}: no such folder or list file")
    _fetch_start(source)  # before anything is written: a failed download leaves no half-made run
    out.mkdir(parents=True, exist_ok=True)
    print(f"scanning {data} ...")
    prep = prepare_videos(data, report=out / "scan.json", **prep_args)
    write_lists(out, prep)
    counts = prep.counts()
    print(f"{len(prep.classes)} classes ({prep.layout}), {len(prep.train)} train / {len(prep.val)} val videos "
          f"(val: {prep.val_source}); lists in {out}")
    if prep.failed:
        print(f"{len(prep.failed)} of {prep.total} videos cannot be decoded and are left out "
              f"(see {out / 'scan.json'}):")
        for f in prep.failed[:10]:
            print(f"  {f['error']}")
        if len(prep.failed) > 10:
            print(f"  ... and {len(prep.failed) - 10} more")
    if prep.dropped_classes:
        print(f"left out, too few usable videos: {', '.join(map(repr, prep.dropped_classes))}")
    cfg, notes, facts = plan_run(prep, out, source, over, device=device, **plan_args)
    for line in notes:
        print(line)
    facts.update(notes=notes, classes=prep.classes, counts=counts, layout=prep.layout, val_split=prep.val_source,
                 undecodable=[f["path"] for f in prep.failed], dropped_classes=prep.dropped_classes)
    _annotate(out / "config.yaml", cfg, notes)
    atomic_write_json(out / "finetune.json", facts, default=str)
    return {"cfg": cfg, "facts": facts}


def _fetch_start(source: Source) -> None:
    from ..weights.download import DownloadError

    try:
        fetch_source(source)
    except DownloadError as e:
        raise DownloadError(f"{e}; or start from weights on disk with --from PATH") from None


def chosen_model_dir(out: Path) -> Path:
    """The weights to keep: ``best/`` (best single-view val top-1 during training), unless the last validation
    is as good, then ``final/`` (on a tie the longer-trained weights; small val sets tie often)."""
    best, final = out / "best", out / "final"
    if not (best / "config.json").is_file():
        return final
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"val_top1"' in line]
    if vals and vals[-1]["val_top1"] >= max(r["val_top1"] for r in vals):
        return final
    return best


def _final_eval(cfg: dict, out: Path, device, progress: bool) -> dict:
    """The kept weights on val with the model's test views; outputs in ``out/val``."""
    from ..factory import load_model
    from ..inference import VideoClassifier
    from .data import _list_path, labelled_items
    from .evaluate import config_views, evaluate_videos, write_outputs

    model_dir = chosen_model_dir(out)
    model = load_model(model_dir)
    d = cfg["data"]
    items, _ = labelled_items(_list_path(d["root"], d["val"]), root=d["root"], sep=d["separator"],
                              model_labels=model.labels, list_labels="model")   # the lists finetune wrote
    clf = VideoClassifier(model, device=device, dtype=torch.float32)
    views = config_views(cfg, model.data_config)
    res = evaluate_videos(clf, items, aggregate=cfg["eval"]["aggregate"], views=views,
                          workers=d["num_workers"], progress=progress, backend=d["backend"], timeout=d["timeout"])
    write_outputs(out / "val", res, model.labels)
    val = {k: res[k] for k in ("top1", "top5", "mean_class_accuracy", "count")}
    val.update(views=views, skipped=res["skipped"])
    return {"model_dir": str(model_dir), "val": val,
            "predict_command": f"uniformerv2 predict VIDEO.mp4 --model {model_dir}"}


def _annotate(path: Path, cfg: dict, notes: list[str]) -> None:
    """``config.yaml``: the resolved recipe, headed by what finetune chose (comments; `train` reads it as is)."""
    head = ["uniformerv2 finetune: the resolved recipe. Reproduce: uniformerv2 train --config THIS_FILE --output DIR",
            "data.test is the val list (the split has train and val only): uniformerv2 eval --config THIS_FILE "
            "--model RUN/final evaluates on it", *notes]
    text = "".join(f"# {line}\n" for line in head) + dump(cfg)
    atomic_write_text(path, text)


__all__ = ["finetune", "resolve_source", "model_options", "data_pipeline", "recipe_run", "memory_plan",
           "activation_bytes", "build_start_model", "KINDS", "RUNS", "FROZEN_RUNS", "Run"]
