"""The training recipes: the shipped configs (``configs/*.yaml``) are the one source, read with the config loader.

- :func:`official_run`: a shipped config's optimisation and schedule (its LR at its global batch, epochs, warmup,
  LR floor, weight decay, clipping); ``engine.finetune`` picks its schedule and LR from these.
- :func:`synthetic_recipe`: the recipe of a dataset written by ``uniformerv2 synth``, on top of the shipped
  ``demo_synth`` config: what ``make demo`` trains, and what ``uniformerv2 ablate`` runs its studies on.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError
from .config import load_config

SYNTHETIC_BASE = "demo_synth"
WARMUP_STEPS = 100  # from scratch, a short warmup can leave the tiny model stuck at chance


@dataclass(frozen=True)
class Run:
    """One official training run (a shipped config, from the official run.sh): its LR at its global batch, its
    length and warmup in epochs, where warmup starts and the cosine ends, AdamW weight decay, gradient clipping."""
    name: str      # the shipped config's name (``uniformerv2 train --config NAME``)
    lr: float
    batch: int
    epochs: int
    warmup: float
    warmup_start_lr: float
    min_lr: float
    weight_decay: float
    clip_grad: float | None


@lru_cache(maxsize=None)
def official_run(name: str) -> Run:
    """The run of the shipped config ``name``; its LR is the LR at its batch (the config scales nothing)."""
    t = load_config(name)["train"]
    if t["lr_scaling"] != "none":
        raise UserError(f"config {name}: lr_scaling {t['lr_scaling']!r}, not an LR at its batch")
    return Run(name, t["lr"], t["batch_size"], t["epochs"], t["warmup_epochs"], t["warmup_start_lr"], t["min_lr"],
               t["weight_decay"], t["clip_grad"])


def synthetic_recipe(data_dir, *, epochs: int = 12, seed: int = 0, model: dict | None = None,
                     num_workers: int | None = None, progress: bool | None = None, absolute: bool = True) -> dict:
    """The ``demo_synth`` recipe for the dataset ``uniformerv2 synth`` wrote in ``data_dir``: the head sized by its
    ``labels.txt``, ~100 warmup steps at the recipe's batch size, ``epochs`` and ``seed``.

    model: ``{"preset": ..., "options": {...}}`` over the recipe's model (the demo's frame-only ablation);
    num_workers, progress: set only when given. absolute: paths made absolute (a study's run directories can be
    trained again from anywhere); the demo keeps them as given, the paths its clips are cached under."""
    data_dir = Path(data_dir).resolve() if absolute else Path(data_dir)
    labels = data_dir / "labels.txt"
    if not labels.is_file() or not (data_dir / "train.csv").is_file():
        raise UserError(f"{data_dir} is not a synthetic dataset (labels.txt, train.csv; see `uniformerv2 synth`)")
    classes = [ln for ln in labels.read_text().splitlines() if ln.strip()]
    train_videos = sum(1 for ln in (data_dir / "train.csv").read_text().splitlines() if ln.strip())
    steps_per_epoch = max(1, train_videos // load_config(SYNTHETIC_BASE)["train"]["batch_size"])
    m = model or {}
    recipe = {
        "base": SYNTHETIC_BASE,
        "seed": seed,
        "model": {**({"preset": m["preset"]} if "preset" in m else {}),
                  "options": {**m.get("options", {}), "num_classes": len(classes)}, "labels": str(labels)},
        "data": {"root": str(data_dir), **({} if num_workers is None else {"num_workers": num_workers})},
        "train": {"epochs": epochs, **({} if progress is None else {"progress": progress}),
                  "warmup_epochs": max(1.0, round(WARMUP_STEPS / steps_per_epoch, 2))},
    }
    return recipe


__all__ = ["Run", "official_run", "synthetic_recipe", "SYNTHETIC_BASE"]
