"""``TrainState``: everything a training checkpoint holds, saved and restored through one pair of methods.

A checkpoint file (``checkpoints/step_XXXXXXXX.pt``) is ``TrainState.state_dict()`` as is::

    model, optimizer, scheduler, scaler, ema     their own state_dicts (ema: None without EMA)
    step, epoch, batch_in_epoch                  the position: optimiser steps done, and where in the epoch
    counters                                     skipped_videos, bad_steps, consecutive_bad, overflow_steps
    best                                         {"top1", "step"} of the best validation so far
    rng                                          every rank's Python / NumPy / torch (CPU, CUDA) generators
    world_size                                   the number of processes that wrote it

Tensors and plain containers only, so the file loads with ``torch.load(weights_only=True)``. What is not
here (the data order, the LR of a step, the run's config) is a pure function of the config and the
position, rebuilt at every start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import checkpoint as ckpt
from . import distributed as dist
from .optim import EMA
from .schedule import WarmupCosine


def _counters() -> dict:
    return {"skipped_videos": 0, "bad_steps": 0, "consecutive_bad": 0, "overflow_steps": 0}


@dataclass
class TrainState:
    """The model, its optimiser, LR schedule, GradScaler and EMA, and the position of the run."""
    model: torch.nn.Module  # the bare model (not the DDP / compiled wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosine
    scaler: torch.amp.GradScaler
    ema: EMA | None = None
    step: int = 0            # optimiser steps done
    epoch: int = 0           # the epoch in progress
    batch_in_epoch: int = 0  # global batches of ``epoch`` already consumed
    counters: dict = field(default_factory=_counters)
    best: dict = field(default_factory=lambda: {"top1": None, "step": None})

    def state_dict(self) -> dict:
        """What a checkpoint file holds. Under torchrun every rank must call it: the RNG states are gathered."""
        rngs = dist.all_gather_objects(ckpt.rng_state())
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "counters": dict(self.counters), "best": dict(self.best), "rng": rngs,
                "world_size": dist.rank_world()[1]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``; this rank takes its own RNG state (rank 0's if the process count changed)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.counters.update(state["counters"])
        self.best = dict(state["best"])
        rank, world = dist.rank_world()
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
