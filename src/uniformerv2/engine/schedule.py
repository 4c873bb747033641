"""Per-iteration learning-rate schedule: linear warmup, then cosine down to a floor (the official recipe).

    step < warmup:  lr = start + (base - start) * step / warmup
    otherwise:      lr = min + (base - min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2

The schedule is a pure function of the optimiser step, so resuming only has to restore the step; the
``state_dict`` is kept so a resumed run can check it is continuing the same schedule.
"""
from __future__ import annotations

import math

from ..errors import UserError


def scaled_lr(base_lr: float, global_batch: int, rule: str = "none", ref_batch: int = 256) -> float:
    """The base LR for ``global_batch`` under a scaling ``rule`` ("none" = official, "linear", "sqrt")."""
    if rule == "none":
        return float(base_lr)
    if rule == "linear":
        return float(base_lr) * global_batch / ref_batch
    if rule == "sqrt":
        return float(base_lr) * math.sqrt(global_batch / ref_batch)
    raise UserError(f"train.lr_scaling must be 'none', 'linear' or 'sqrt', got {rule!r}")


class WarmupCosine:
    """Sets ``group["lr"] = lr_at(step) * group.get("lr_scale", 1)`` on every param group."""

    def __init__(self, optimizer, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 1e-6, warmup_start_lr: float = 1e-6):
        if total_steps < 1:
            raise UserError(f"the run has no optimiser steps (total_steps={total_steps}); "
                            "check train.epochs, train.max_steps, train.batch_size and the list size")
        self.optimizer = optimizer
        self.base_lr, self.min_lr, self.warmup_start_lr = float(base_lr), float(min_lr), float(warmup_start_lr)
        self.total_steps, self.warmup_steps = int(total_steps), int(min(warmup_steps, total_steps))
        self.step_count = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def set_step(self, step: int) -> float:
        """Put the LR of optimiser step ``step`` (0-based) on the param groups; returns the unscaled LR."""
        self.step_count = int(step)
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict:
        return dict(base_lr=self.base_lr, min_lr=self.min_lr, warmup_start_lr=self.warmup_start_lr,
                    total_steps=self.total_steps, warmup_steps=self.warmup_steps, step_count=self.step_count)

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        changed = [k for k in ("base_lr", "total_steps", "warmup_steps") if k in state and state[k] != mine[k]]
        if changed:
            raise UserError("the checkpoint's LR schedule differs from this config "
                            + ", ".join(f"{k}: {state[k]} -> {mine[k]}" for k in changed))
        self.set_step(int(state["step_count"]))
