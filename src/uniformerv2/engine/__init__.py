"""Training and evaluation engine: ``train(config, output_dir, resume=False)`` and ``evaluate(model, data)``.

Modules: ``config`` (schema, YAML, overrides), ``train`` (the loop: ``train`` -> ``train_one_epoch`` ->
``train_step``), ``state`` (``TrainState``: what a checkpoint holds), ``runlog`` (metrics.jsonl, progress),
``evaluate`` / ``metrics``, ``optim`` (AdamW groups, layer decay, EMA), ``schedule`` (warmup + cosine),
``checkpoint`` (atomic files, RNG states), ``distributed`` (torchrun/DDP, samplers), ``data`` (datasets and
loaders for the engine).

Note: the names ``train`` and ``evaluate`` here are the functions; the modules of the same names are
``sys.modules["uniformerv2.engine.train"]`` / ``importlib.import_module("uniformerv2.engine.evaluate")``.
"""
from __future__ import annotations

from .config import DEFAULTS, load_config
from .evaluate import evaluate
from .train import TrainingDiverged, train

__all__ = ["train", "evaluate", "load_config", "DEFAULTS", "TrainingDiverged"]
