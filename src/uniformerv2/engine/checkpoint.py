"""Training checkpoints: atomic, pickle-free to load, with every RNG and the position in the data.

Files in ``<run>/checkpoints/``: ``step_00001234.pt`` (the last ``keep_last`` are kept) and ``best.pt``.
They hold tensors and plain containers only (``torch.save``), and are read with
``torch.load(weights_only=True)``. Each write goes to a temporary file beside the target, is fsynced and
renamed over it, so a run killed at any moment leaves either the old file or the new one.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write

STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


def rng_state() -> dict:
    """Python, NumPy and torch (CPU + CUDA) generator states, as tensors and plain containers."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(i) for i in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict) -> Path:
    """``torch.save`` ``state`` atomically (temp file, fsync, rename)."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))
    return Path(path)


def load(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding objects we refuse to unpickle
        raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:300]}") from None


def step_files(directory: Path) -> list[Path]:
    """``step_*.pt`` files in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def save_step(directory: Path, step: int, state: dict, keep_last: int = 2) -> Path:
    """Write ``step_<step>.pt`` and delete all but the newest ``keep_last`` step files."""
    path = save(Path(directory) / f"step_{step:08d}.pt", state)
    for old in step_files(directory)[:-max(1, keep_last)]:
        old.unlink(missing_ok=True)
    return path


def load_latest(directory: Path, map_location="cpu") -> tuple[dict, Path] | tuple[None, None]:
    """The newest readable step checkpoint (falls back to older ones if the newest cannot be read)."""
    errors = []
    for path in reversed(step_files(directory)):
        try:
            return load(path, map_location), path
        except CheckpointError as e:
            errors.append(str(e))
    if errors:
        raise CheckpointError("no readable checkpoint: " + "; ".join(errors))
    return None, None
