"""Saving pre-head features (``VideoClassifier.extract_features``) as ``.safetensors`` or ``.npy``.

safetensors file, tensors (float32):
    features       (C,) per video, or (W, C) per window: the mean over views
    view_features  (V, C), or (W, V, C): one row per view (clip-major, see ``views``)
    windows        (W, 2) start/end seconds (windowed only)
  metadata (strings): path, model (preset/arch), views, dim.
npy: ``NAME.npy`` holds ``features``; with windows ``NAME.windows.npy`` holds ``windows``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError

FORMATS = ("safetensors", "npy")


def save_features(feats, out: Path, fmt: str = "safetensors", metadata: dict | None = None) -> list[Path]:
    """Write ``feats`` (a ``Features``) to ``out`` (suffix added by format); returns the files written."""
    from ..fileio import atomic_write

    if fmt not in FORMATS:
        raise UserError(f"unknown feature format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "npy":
        paths = [out.with_name(out.name + ".npy")]
        atomic_write(paths[0], lambda p: _save_npy(p, feats.features))
        if feats.windows is not None:
            paths.append(out.with_name(out.name + ".windows.npy"))
            atomic_write(paths[1], lambda p: _save_npy(p, feats.windows))
        return paths
    from safetensors.numpy import save_file

    tensors = {"features": feats.features, "view_features": feats.view_features}
    if feats.windows is not None:
        tensors["windows"] = feats.windows
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    path = out.with_name(out.name + ".safetensors")
    atomic_write(path, lambda p: save_file(tensors, p, metadata=meta))
    return [path]


def _save_npy(path, array) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append another ".npy"
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
