"""What the training loop writes while it runs: ``metrics.jsonl`` records and the progress bar.

``MetricsLog`` appends one JSON object per line (rank 0 only), optionally mirrored to TensorBoard.
``StepWindow`` sums the optimiser steps between two records and turns them into one::

    {"step", "epoch", "loss", "train_top1", "lr", "grad_norm", "clips_per_s", "data_wait",
     "skipped_videos", "bad_steps", "overflow_steps"}

``loss`` / ``train_top1`` / ``grad_norm`` average the finite steps of the window (None if there was none);
``clips_per_s`` counts every clip stepped over, ``data_wait`` is the share of the time spent waiting for
the data loader.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only), optionally mirrored to TensorBoard."""

    def __init__(self, path: Path, enabled: bool, tensorboard: bool = False):
        self.path, self.enabled, self.tb = path, enabled, None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed; logging to metrics.jsonl only")

    def truncate_after(self, step: int) -> None:
        """On resume: drop records of steps after the checkpoint (they will be logged again)."""
        if self.enabled and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            self.path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, record["step"])

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class StepWindow:
    """The optimiser steps since the last ``metrics.jsonl`` record (sums over the global batch)."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.loss = self.correct = self.count = 0.0  # finite steps only
        self.norms: list[float] = []
        self.clips, self.time, self.wait, self.lr = 0, 0.0, 0.0, None

    def timed(self, iterable):
        """``iterable``'s items; the time spent waiting for each one counts as ``data_wait``."""
        it = iter(iterable)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t0
            yield item

    def add(self, result, seconds: float) -> None:
        """One ``train_step`` result (``loss``, ``correct``, ``count``, ``grad_norm``, ``lr``, ``ok``)."""
        if result.ok:
            self.loss += result.loss
            self.correct += result.correct
            self.count += result.count
            self.norms.append(result.grad_norm)
        self.clips += int(result.count)
        self.time += seconds
        self.lr = result.lr

    def show(self, bar) -> None:
        """Advance the progress bar (if any) by one step, with the window's mean loss and the LR."""
        if bar is not None:
            bar.update(1)
            if self.count:
                bar.set_postfix(loss=f"{self.loss / self.count:.3f}", lr=f"{self.lr:.2e}")

    def flush(self, state, steps_per_epoch: int) -> dict:
        """The window's record at the position of ``state`` (a ``TrainState``); starts a new window."""
        c, counters = max(self.count, 1.0), state.counters
        record = {"step": state.step, "epoch": state.epoch + state.batch_in_epoch / steps_per_epoch,
                  "loss": self.loss / c if self.count else None,
                  "train_top1": 100.0 * self.correct / c if self.count else None,
                  "lr": self.lr, "grad_norm": sum(self.norms) / len(self.norms) if self.norms else None,
                  "clips_per_s": self.clips / max(self.time, 1e-9),
                  "data_wait": self.wait / max(self.time, 1e-9),
                  "skipped_videos": counters["skipped_videos"], "bad_steps": counters["bad_steps"],
                  "overflow_steps": counters["overflow_steps"]}
        self._reset()
        return record
