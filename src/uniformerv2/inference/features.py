"""Saving pre-head features (``VideoClassifier.extract_features``) as ``.safetensors`` or ``.npy``.

safetensors file, tensors (float32):
    features       (C,) per video, or (W, C) per window: the mean over views
    view_features  (V, C), or (W, V, C): one row per view (clip-major, see ``views``)
    windows        (W, 2) start/end seconds (windowed only)
  metadata (strings): path, model (preset/arch), views, dim -- in sorted order, so that the same features
  always give the same bytes (safetensors itself writes metadata in a random order).
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
    tensors = {"features": feats.features, "view_features": feats.view_features}
    if feats.windows is not None:
        tensors["windows"] = feats.windows
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    path = out.with_name(out.name + ".safetensors")
    data = _safetensors_bytes(tensors, meta)
    atomic_write(path, lambda p: Path(p).write_bytes(data))
    return [path]


def _safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    """A safetensors file whose header lists the metadata in sorted order (the tensors are already in a fixed
    order), padded to 8 bytes with spaces as the format asks."""
    from safetensors.numpy import save

    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _save_npy(path, array) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append another ".npy"
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
