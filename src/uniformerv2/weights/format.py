"""Our own model format: a directory with ``config.json`` + ``model.safetensors``. No pickle.

config.json: {"format": "uniformerv2", "version": 1, "model": ModelConfig fields, "preset": name|null,
              "labels": [...]|null, "data": DataConfig fields, ...extra (e.g. "training")}
This module only reads and writes the files; building a model from them is ``uniformerv2.factory``'s job.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..fileio import atomic_write, atomic_write_json
from .io import load_state_dict

CONFIG, WEIGHTS = "config.json", "model.safetensors"
FORMAT, VERSION = "uniformerv2", 1


def write_model_dir(directory, config: dict, state_dict: dict) -> Path:
    """Write ``state_dict`` (tensors, moved to the CPU) and ``config`` atomically into ``directory``."""
    directory = Path(directory)
    cfg = {"format": FORMAT, "version": VERSION, **config}
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write(directory / WEIGHTS, lambda p: save_file(sd, p, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG, cfg, indent=2)
    return directory


def is_model_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file()


def read_config(directory) -> dict:
    p = Path(directory) / CONFIG
    try:
        cfg = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {p}: {e}") from None
    if cfg.get("format") != FORMAT or "model" not in cfg:
        raise CheckpointError(f"{p} is not a uniformerv2 model config")
    return cfg


def read_weights(directory) -> dict[str, torch.Tensor]:
    return load_state_dict(Path(directory) / WEIGHTS)
