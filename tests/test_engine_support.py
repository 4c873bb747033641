"""Helpers for the engine tests: a keyed-random in-memory clip dataset and small configs.

Also importable by the scripts that the distributed tests run under torchrun.
"""
from __future__ import annotations

import torch

NANO = {"preset": "uniformerv2_nano",
        "options": {"num_classes": 4, "num_frames": 4, "head_dropout": 0.0, "global_mlp_dropout": 0.0}}


class ToyClips(torch.utils.data.Dataset):
    """Clips (3, T, S, S) whose class is which colour channel is lifted (or lowered, class 3), under noise.

    The noise is drawn from a generator keyed on (seed, epoch, index), like the real datasets, so items
    do not depend on the worker or process that loads them. ``bad`` indices return a failure marker.
    """

    def __init__(self, n: int, classes: int = 4, frames: int = 4, size: int = 32, seed: int = 0,
                 bad: tuple = (), signal: float = 0.6):
        self.n, self.classes, self.frames, self.size = n, classes, frames, size
        self.seed, self.epoch, self.bad, self.signal = seed, 0, set(bad), signal
        self.paths = [f"toy/{i:04d}.mp4" for i in range(n)]

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epoch = epoch

    def label(self, i):
        return (i * 7 + 3) % self.classes

    def __getitem__(self, i):
        if i in self.bad:
            return {"error": f"cannot decode {self.paths[i]}", "index": i, "path": self.paths[i]}
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_033 + i)
        y = self.label(i)
        v = torch.randn(3, self.frames, self.size, self.size, generator=g)
        v[y % 3] += self.signal if y < 3 else -self.signal
        return {"video": v, "label": y, "index": i}

    @staticmethod
    def collate(items):
        ok = [x for x in items if "error" not in x]
        skipped = [x["path"] for x in items if "error" in x]
        video = torch.stack([x["video"] for x in ok]) if ok else torch.zeros(0)
        return {"video": video, "label": torch.tensor([x["label"] for x in ok], dtype=torch.long),
                "index": torch.tensor([x["index"] for x in ok], dtype=torch.long), "skipped": skipped}


def toy_config(**train) -> dict:
    t = {"epochs": 2, "batch_size": 8, "lr": 2e-3, "warmup_epochs": 0.25, "log_every": 1, "progress": False,
         "checkpoint_every": 0, "keep_last": 3}
    t.update(train)
    return {"seed": 5, "model": NANO, "data": {"num_workers": 0}, "train": t, "eval": {"batch_size": 8}}


def test_toy_dataset_is_keyed():
    a, b = ToyClips(8), ToyClips(8)
    a.set_epoch(1)
    b.set_epoch(1)
    assert torch.equal(a[3]["video"], b[3]["video"])
    b.set_epoch(2)
    assert not torch.equal(a[3]["video"], b[3]["video"])
