"""Our own model format: a directory with ``config.json`` + ``model.safetensors``. No pickle.

config.json: {"format": "uniformerv2", "version": 1, "model": ModelConfig fields, "preset": name|null,
              "labels": [...]|null, "data": {num_frames, crop_size, short_side, mean, std, ...}, ...extra}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError

CONFIG, WEIGHTS = "config.json", "model.safetensors"


def atomic_write(path: Path, write) -> Path:
    """Write through ``write(tmp_path)`` to a temporary file beside ``path``, fsync, then rename.

    The file gets the usual mode of a new file (0666 & ~umask), not the private mode of temporary files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_pretrained(model, directory, **metadata) -> Path:
    directory = Path(directory)
    cfg = {"format": "uniformerv2", "version": 1, "model": model.cfg.to_dict(),
           "preset": getattr(model, "preset", None), "labels": getattr(model, "labels", None),
           "data": getattr(model, "data_config", None), **metadata}
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS, lambda p: save_file(sd, p, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))
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
    if cfg.get("format") != "uniformerv2" or "model" not in cfg:
        raise CheckpointError(f"{p} is not a uniformerv2 model config")
    return cfg


def from_pretrained(directory, map_location="cpu", **overrides):
    """Load a model directory written by ``save_pretrained`` (``overrides``: e.g. ``num_frames=16``)."""
    from ..model.uniformerv2 import ModelConfig, UniFormerV2
    from .io import load_state_dict

    directory = Path(directory)
    if not is_model_dir(directory):
        raise CheckpointError(f"{directory} is not a model directory (no {CONFIG})")
    cfg = read_config(directory)
    model = UniFormerV2(ModelConfig.from_dict({**cfg["model"], **overrides}))
    sd = load_state_dict(directory / WEIGHTS)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not fit the config "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.labels = cfg.get("labels")
    model.preset = cfg.get("preset")
    model.data_config = cfg.get("data") or _data_default(model)
    model.load_report = None
    return model.to(map_location)


def _data_default(model):
    from ..model.factory import default_data_config

    return default_data_config(model.cfg)
