"""Run configuration: defaults, YAML files (a path or a shipped name), ``key.sub=value`` overrides.

The schema is ``DEFAULTS`` below; a config file or override naming a key that is not in it is an error.
``model.options`` and ``data.pipeline`` are maps of ``ModelConfig`` / ``DataConfig`` fields, checked against
those records. Values given on the command
line are parsed as YAML (``train.epochs=3``, ``model.options.drop_path_rate=0.1``, ``data.val=null``).
"""
from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path

import yaml

from ..data.config import DataConfig
from ..errors import UserError
from ..model.config import ModelConfig

FREE_FORM = {("model", "options"), ("data", "pipeline")}
AUGMENT_ON = ("cpu", "device")
MIXUP_KEYS = ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob", "label_smoothing")

DEFAULTS: dict = {
    "seed": 6666,
    "model": {
        "preset": "tiny_k400_8x64",  # a preset or an arch name (uniformerv2.list_presets / list_models)
        "options": {},               # ModelConfig fields on top (num_classes, drop_path_rate, frozen_backbone...)
        "pretrained": None,          # image-ViT weights (CLIP...) to arm the backbone
        "checkpoint": None,          # a whole UniFormerV2 checkpoint / model dir to start from
        "head": "auto",              # auto | keep | reset (for `checkpoint`)
        "labels": None,              # class names: list, shipped list name or file (default: the preset's)
    },
    "data": {
        "root": ".",                 # folder the list paths are relative to
        "train": None,               # list files ("path,label" lines); relative to root if not found as is
        "val": None,
        "test": None,                # multi-view test after training (best checkpoint), if given
        "separator": None,           # list field separator (default: "," if the line has one, else spaces)
        "num_workers": 4,
        "backend": "pyav",           # video decoder: pyav | decord | opencv
        "timeout": 30.0,             # seconds per video before it counts as undecodable
        "frame_template": "img_{:05d}.jpg",  # frame-folder lists (Something-Something)
        "frame_start_index": 1,
        "pipeline": {},              # DataConfig fields over the model's (test_clips, flip, rand_augment...)
        "augment_on": "cpu",         # cpu: workers augment and normalise | device: workers only decode,
                                     # RandAugment/crop/flip/normalise/repeats run batched on train.device
        "mixup": None,               # e.g. {mixup_alpha: 0.8, cutmix_alpha: 1.0, label_smoothing: 0.1}: on the device
    },
    "train": {
        "epochs": 55,
        "max_steps": None,           # stop after this many optimiser steps (also the schedule's length)
        "batch_size": 256,           # global batch, whatever the number of processes
        "accum_steps": 1,            # micro-steps per optimiser step (per-process batch = batch/(procs*accum))
        "lr": 1.0e-5,                # base LR (for lr_ref_batch when lr_scaling is not "none")
        "lr_scaling": "none",        # none (official) | linear | sqrt, relative to lr_ref_batch
        "lr_ref_batch": 256,
        "min_lr": 1.0e-6,
        "warmup_epochs": 5.0,
        "warmup_start_lr": 1.0e-6,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1.0e-8,
        "layer_decay": None,         # e.g. 0.75; none in the official recipe
        "clip_grad": 20.0,           # max grad norm (null = no clipping, norm still logged)
        "precision": "auto",         # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16 (with GradScaler)
        "grad_checkpointing": 0,     # activation checkpointing of the first N blocks (true = all)
        "ema_decay": None,           # e.g. 0.9998: keep an EMA of the weights (evaluated and saved as well)
        "max_bad_steps": 20,         # stop after this many consecutive non-finite losses
        "log_every": 10,             # steps between metrics.jsonl records
        "eval_every": 1,             # epochs between validations (0 = never)
        "checkpoint_every": 0,       # steps between checkpoints (0 = end of every epoch only)
        "keep_last": 2,
        "device": "auto",            # auto | cpu | cuda | cuda:N
        "compile": False,            # torch.compile the model
        "sync_bn": False,            # SyncBatchNorm under DDP (local MHRA has BatchNorm)
        "tensorboard": False,
        "progress": True,
    },
    "eval": {
        "batch_size": 8,             # videos per forward pass (each with all of its views)
        "aggregate": "softmax",      # softmax (official: summed per-view softmax) | logits (mean logits)
        "test_clips": None,          # default: the model's data config
        "test_crops": None,
        "video_key": None,           # "path_stem": sum the scores of list entries of one untrimmed video
        "use_ema": False,
        "num_workers": None,         # default: data.num_workers
    },
}


def shipped_configs() -> list[str]:
    root = importlib.resources.files("uniformerv2") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    shipped = importlib.resources.files("uniformerv2") / "configs" / f"{stem}.yaml"
    if shipped.is_file() and len(p.parts) == 1:
        return Path(str(shipped))
    raise UserError(f"config {name_or_path!r} is neither a file nor a shipped config "
                    f"({', '.join(shipped_configs())})")


def merge(base: dict, update: dict, where: tuple = ()) -> dict:
    """Deep-merge ``update`` into a copy of ``base``; keys must exist in ``base`` outside free-form maps."""
    out = copy.deepcopy(base)
    for k, v in (update or {}).items():
        here = where + (k,)
        if where in FREE_FORM or (where and where[:2] in FREE_FORM):
            out[k] = copy.deepcopy(v)
        elif k not in out:
            raise UserError(f"unknown config key {'.'.join(here)!r}")
        elif isinstance(out[k], dict) and here not in FREE_FORM:
            if not isinstance(v, dict):
                raise UserError(f"config key {'.'.join(here)!r} is a section, got {v!r}")
            out[k] = merge(out[k], v, here)
        elif here in FREE_FORM:
            if not isinstance(v, dict):
                raise UserError(f"config key {'.'.join(here)!r} must be a mapping, got {v!r}")
            out[k] = {**out[k], **copy.deepcopy(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(items: list[str]) -> dict:
    """``["train.epochs=3", "data.root=/x"]`` -> nested dict (values parsed as YAML)."""
    tree: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise UserError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return tree


def load_config(source: str | Path | dict | None = None, overrides: list[str] | dict | None = None) -> dict:
    """Defaults <- config (file path, shipped name or dict; may name a ``base`` config) <- overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if source is not None:
        cfg = merge(cfg, _read(source))
    if overrides:
        cfg = merge(cfg, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    validate(cfg)
    return cfg


def _read(source, depth: int = 0) -> dict:
    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        path = resolve_path(str(source))
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: a config must be a mapping")
    base = data.pop("base", None)
    if base is not None:
        if depth > 8:
            raise UserError("config 'base' chain is too deep")
        return merge(merge(copy.deepcopy(DEFAULTS), _read(base, depth + 1)), data)
    return data


def validate(cfg: dict) -> None:
    t = cfg["train"]
    for key in ("epochs", "batch_size", "accum_steps"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise UserError(f"train.{key} must be a positive integer, got {t[key]!r}")
    if t["max_steps"] is not None and (not isinstance(t["max_steps"], int) or t["max_steps"] < 1):
        raise UserError(f"train.max_steps must be a positive integer or null, got {t['max_steps']!r}")
    if t["precision"] not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"train.precision must be auto, fp32, bf16 or fp16, got {t['precision']!r}")
    if cfg["data"]["augment_on"] not in AUGMENT_ON:
        raise UserError(f"data.augment_on must be cpu or device, got {cfg['data']['augment_on']!r}")
    mixup = cfg["data"]["mixup"]
    if mixup is not None:
        if not isinstance(mixup, dict):
            raise UserError(f"data.mixup must be null or a mapping of {', '.join(MIXUP_KEYS)}, got {mixup!r}")
        unknown = sorted(set(mixup) - set(MIXUP_KEYS))
        if unknown:
            raise UserError(f"unknown data.mixup key(s): {', '.join(unknown)} (known: {', '.join(MIXUP_KEYS)})")
    if cfg["eval"]["aggregate"] not in ("softmax", "logits"):
        raise UserError(f"eval.aggregate must be softmax or logits, got {cfg['eval']['aggregate']!r}")
    if cfg["eval"]["video_key"] not in (None, "path_stem", "path"):
        raise UserError(f"eval.video_key must be null, path or path_stem, got {cfg['eval']['video_key']!r}")
    # the free-form maps are typed records' fields: a misspelt key is an error here, not ignored later
    ModelConfig.check_keys(cfg["model"]["options"])
    DataConfig.check_keys(cfg["data"]["pipeline"])
    if not isinstance(cfg["seed"], int):
        raise UserError(f"seed must be an integer, got {cfg['seed']!r}")
    for key in ("lr", "min_lr", "warmup_start_lr", "weight_decay", "eps", "warmup_epochs"):
        try:
            t[key] = float(t[key])  # YAML reads "1e-5" (no dot) as a string
        except (TypeError, ValueError):
            raise UserError(f"train.{key} must be a number, got {t[key]!r}") from None


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
