"""Batching: ``collate`` (drops failed items and reports them), per-sample generators, ``build_loader``.

Randomness is keyed on (seed, epoch, sample index) through ``sample_generator``, never on worker state, so
batches are identical for any number of workers.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import torch

_WARNED: set = set()
_MASK = (1 << 63) - 1


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A ``torch.Generator`` seeded from (seed, epoch, index) by a SplitMix64-style mix."""
    x = 0
    for part in (seed, epoch, index):
        x = (x ^ (int(part) & _MASK)) * 0x9E3779B97F4A7C15 & ((1 << 64) - 1)
        x ^= x >> 31
    return torch.Generator().manual_seed(x & _MASK)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed python/numpy from torch's per-worker seed, one torch thread."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)


def collate(items: list) -> dict:
    """Stack good items; failed ones (dicts with ``"error"``) are dropped, listed, and warned about once per
    file in each process (collate runs in the DataLoader workers).

    Returns ``{"video": (B, ...) or None if all failed, "label": (B,), "index": (B,), "skipped": [paths],
    "errors": [messages]}`` plus ``"path"`` when items carry one. Items holding ``k`` repeated augmentations
    (``video`` of shape (k, ...), ``"repeats": k``) are flattened to k consecutive rows.
    """
    good = [it for it in items if "error" not in it]
    bad = [it for it in items if "error" in it]
    for it in bad:
        if it["path"] not in _WARNED:
            _WARNED.add(it["path"])
            warnings.warn(f"skipping unreadable video: {it['error']}", RuntimeWarning, stacklevel=2)
    out = {"skipped": [it["path"] for it in bad], "errors": [it["error"] for it in bad]}
    videos, labels, indices, paths = [], [], [], []
    for it in good:
        k = it.get("repeats", 0)
        rows = list(it["video"]) if k else [it["video"]]
        videos += rows
        labels += [it["label"]] * len(rows)
        indices += [it["index"]] * len(rows)
        paths += [it.get("path")] * len(rows)
    out["video"] = torch.stack(videos) if videos else None
    out["label"] = torch.tensor(labels, dtype=torch.long)
    out["index"] = torch.tensor(indices, dtype=torch.long)
    if any(p is not None for p in paths):
        out["path"] = paths
    return out


def build_loader(dataset, batch_size: int, *, shuffle: bool = False, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool | None = None, drop_last: bool = False,
                 seed: int = 0, prefetch_factor: int | None = None, sampler=None, multiprocessing_context=None):
    """A DataLoader with ``collate`` and ``seed_worker``. The shuffle order comes from a generator seeded with
    ``seed`` (a new, reproducible order each epoch); call ``dataset.set_epoch(e)`` before iterating epoch e."""
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed) if shuffle and sampler is None else None
    kwargs = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = num_workers > 0 if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
        if multiprocessing_context is not None:
            kwargs["multiprocessing_context"] = multiprocessing_context
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory, drop_last=drop_last,
                      worker_init_fn=seed_worker, generator=generator, **kwargs)
