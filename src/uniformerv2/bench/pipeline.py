"""Training input pipeline (``uniformerv2 bench pipeline``): clips per CPU core for raw and prepared files x the
augmentation in the workers or on the device, side by side; and end-to-end training throughput with real decoding
over N worker processes, through the trainer's own step."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from ..errors import UserError
from ..factory import create_model
from .common import device_name, device_of, load_text, sync, threads
from .model import _amp_dtype, compile_model, train_state
from .videos import kinetics_like_files

FILES = ("raw", "prepared")
AUGMENT_ON = ("cpu", "device")


def pipeline_files(root, count: int = 4, seconds: float = 10.0, settings=None) -> dict:
    """Generated Kinetics-like files (``kinetics_like_files``) and their prepared versions (default
    ``PrepareSettings``; existing ones are reused): ``{"raw": [...], "prepared": [...], "psnr", "size_ratio"}``
    (mean PSNR of the prepared frames against the sources, bytes after / before; None where reused)."""
    from pathlib import Path

    from ..data.transcode import PrepareSettings, transcode

    raw = kinetics_like_files(Path(root) / "raw", count, seconds)
    prepared, psnrs = [], []
    for p in raw:
        out = Path(root) / "prepared" / p.name
        if not out.exists():
            psnrs.append(transcode(p, out, settings or PrepareSettings(), psnr_frames=16)["psnr"])
        prepared.append(out)
    return {"raw": raw, "prepared": prepared, "psnr": float(np.mean(psnrs)) if psnrs else None,
            "size_ratio": sum(p.stat().st_size for p in prepared) / sum(p.stat().st_size for p in raw)}


def training_dataset(paths, data_config, augment_on: str, *, num_classes: int = 400, videos: int | None = None):
    """The training dataset and collate function ``engine.data`` builds for ``augment_on`` ("cpu": the whole
    transform in the worker, float clips; "device": decoded clips, ``collate_clips``) over ``paths``."""
    from ..data import VideoListDataset, build_transform, collate, collate_clips
    from ..data.lists import VideoItem

    dc = data_config
    n = videos or len(paths)
    items = [VideoItem(str(paths[i % len(paths)]), i % num_classes) for i in range(n)]
    common = dict(split="train", num_frames=dc.num_frames, sampling=dc.sampling, stride=dc.stride, seed=0)
    if augment_on == "device":
        return VideoListDataset(items, raw=True, **common), collate_clips
    tf = build_transform("train", crop_size=dc.crop_size, short_side=dc.test_short_side, mean=dc.mean, std=dc.std,
                         flip=dc.flip, rand_augment=dc.rand_augment, scale=tuple(dc.crop_scale))
    return VideoListDataset(items, transform=tf, repeats=dc.repeated_aug, **common), collate


class _Timed(torch.utils.data.Dataset):
    """Items carry the CPU seconds their worker spent on them (``cpu_s``); ``collate`` adds its own."""

    def __init__(self, dataset, collate):
        self.dataset, self._collate = dataset, collate

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        c0 = time.process_time()
        item = self.dataset[i]
        item["cpu_s"] = time.process_time() - c0
        return item

    def collate(self, items):
        c0 = time.process_time()
        out = self._collate(items)
        out["cpu_s"] = sum(it["cpu_s"] for it in items) + time.process_time() - c0
        return out


def _worker_loader(dataset, collate, batch_size: int):
    """One worker process (one decoder thread, one torch thread, as in training), fixed order."""
    from ..data.loader import seed_worker

    timed = _Timed(dataset, collate)
    return torch.utils.data.DataLoader(timed, batch_size=batch_size, num_workers=1, collate_fn=timed.collate,
                                       worker_init_fn=seed_worker, persistent_workers=False, prefetch_factor=2)


def pipeline_rates(preset: str = "k400_b16_8x224", *, files: int = 4, seconds: float = 10.0, clips: int = 24,
                   batch_size: int = 4, workdir=None, device: str | None = None, data_config=None,
                   cases=None, verbose: bool = True) -> dict:
    """Training clips per second per CPU core, side by side in one run on the same generated files: raw and
    prepared files x the transform in the worker (``cpu``) or on the device (``device``: the worker decodes,
    ``TrainAugment`` runs on ``device``), plus decoding alone. Each case runs in a worker process of its own
    (one decoder thread, one torch thread, as in training) over ``clips`` videos, batch by batch in turn with
    the other cases; the rate is clips over that worker's CPU time (decode, transform, collate), so other
    programs on the machine do not inflate it as they do wall time. ``device_ms``: the device-side
    augmentation per clip (CPU time of one thread when ``device`` is the CPU). ``cases``: a subset of the
    (files, augmentation) pairs, e.g. ``[("raw", "cpu"), ("prepared", "device")]`` (default: all six)."""
    import tempfile
    from pathlib import Path

    from ..data.device_augment import TrainAugment

    every = [(f, a) for f in FILES for a in (*AUGMENT_ON, "decode only")]
    cases = every if cases is None else [tuple(c) for c in cases]
    if not cases or any(c not in every for c in cases):
        raise UserError(f"cases must be (files, augmentation) pairs of {every}, got {cases}")
    dev = device_of(device)
    dc = data_config or create_model(preset).data_config
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    try:
        made = pipeline_files(root, files, seconds)
        loaders, rows = {}, {}
        for f, a in cases:
            ds, collate = training_dataset(made[f], dc, "cpu" if a == "cpu" else "device", videos=clips + batch_size)
            loaders[(f, a)] = iter(_worker_loader(ds, collate, batch_size))
            rows[(f, a)] = {"files": f, "augment_on": a, "clips": 0, "cpu_s": 0.0, "device_s": 0.0}
            next(loaders[(f, a)])  # warm-up batch: worker start, codec set-up
        augment = TrainAugment.from_data_config(dc, seed=0, device=dev)
        with threads(1):
            for _ in range(clips // batch_size):
                for key, it in loaders.items():
                    batch = next(it)
                    r = rows[key]
                    r["cpu_s"] += batch["cpu_s"]
                    r["clips"] += len(batch["label"]) * (dc.repeated_aug if key[1] == "device" else 1)
                    if key[1] == "device":
                        sync(dev)
                        c0, w0 = time.process_time(), time.perf_counter()
                        augment(batch, 0)
                        sync(dev)
                        r["device_s"] += (time.perf_counter() - w0) if dev.type == "cuda" else time.process_time() - c0
        del loaders
        out = []
        for r in rows.values():
            r["worker_ms"] = 1e3 * r["cpu_s"] / r["clips"]
            r["clips_per_core_s"] = r["clips"] / r["cpu_s"]
            r["device_ms"] = 1e3 * r["device_s"] / r["clips"] if r["augment_on"] == "device" else None
            out.append(r)
        if verbose:
            print("\n".join(pipeline_table({"rows": out})), file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"preset": preset, "frames": dc.num_frames, "crop_size": dc.crop_size, "rand_augment": dc.rand_augment,
            "repeated_aug": dc.repeated_aug, "files": files, "seconds": seconds, "clips": clips,
            "psnr": made["psnr"], "size_ratio": made["size_ratio"], "device": device_name(dev),
            "load": load_text(), "rows": out}


def pipeline_table(result: dict) -> list[str]:
    lines = ["| files | augmentation | worker CPU ms per clip | training clips/s per core | device ms per clip |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        dev = "-" if r["device_ms"] is None else f"{r['device_ms']:.1f}"
        lines.append(f"| {r['files']} | {r['augment_on']} | {r['worker_ms']:.1f} | {r['clips_per_core_s']:.1f} | "
                     f"{dev} |")
    return lines


def bench_pipeline(preset: str = "k400_b16_8x224", *, batch_size: int = 8, workers: int = 4, steps: int = 10,
                   videos: int = 32, amp: str | None = "bf16", device: str | None = None, compile=False,
                   seconds: float = 4.0, workdir=None, train: bool = True, grad_ckpt=0, dpe: str = "auto",
                   model=None, files: str = "prepared", augment_on: str = "device", verbose: bool = True) -> dict:
    """End-to-end training throughput with real decoding: ``videos`` generated Kinetics-like H.264 files
    (340×256, 30 fps; ``files="prepared"``: transcoded by ``data.transcode`` first), read by ``workers``
    DataLoader processes that either run the preset's training transform (``augment_on="cpu"``) or only
    decode (``"device"``: ``TrainAugment`` on the device), then the trainer's step (``engine.train.train_step``)
    under autocast to ``amp`` (None: fp32). Returns clips/s, the fraction
    of wall time the step loop waited for data, and the workers' clips per CPU second."""
    import tempfile
    from pathlib import Path

    from ..accel import optimize
    from ..data.device_augment import ToDevice, TrainAugment
    from ..data.loader import seed_worker
    from ..engine.train import train_step

    if files not in FILES or augment_on not in AUGMENT_ON:
        raise UserError(f"files must be one of {FILES} and augment_on one of {AUGMENT_ON}")
    dev = device_of(device)
    model = model if model is not None else create_model(preset)
    dc = model.data_config
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        made = pipeline_files(root, min(videos, 8), seconds)  # encoding is slow on small machines: a few files
        if verbose:
            print(f"generated {len(made['raw'])} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        ds, collate = training_dataset(made[files], dc, augment_on, num_classes=model.num_classes, videos=videos)
        timed = _Timed(ds, collate)
        loader = torch.utils.data.DataLoader(
            timed, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
            collate_fn=timed.collate, pin_memory=dev.type == "cuda", worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
        augment = (TrainAugment.from_data_config(dc, seed=0, device=dev) if augment_on == "device"
                   else ToDevice(dev))
        model = model.to(dev).train(train)
        optimize(model, for_inference=not train, inplace=False, dpe=dpe, grad_checkpointing=grad_ckpt if train else 0)
        step_model = compile_model(model, "full" if compile is True else (compile or "none"))
        amp_dtype = _amp_dtype(amp)
        state = train_state(model, dev, amp_dtype) if train else None

        def step(batch) -> int:
            """One training step of the trainer (or a forward pass); the clips it took."""
            if train:
                state.epoch = epoch
                return int(train_step(state, iter([batch]), forward=step_model, device=dev, augment=augment,
                                      amp_dtype=amp_dtype).count)
            x, _ = augment(batch, epoch)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=amp_dtype or torch.float32,
                                                        enabled=amp_dtype is not None):
                step_model(x)
            return x.shape[0]

        epoch = 0
        it = iter(loader)

        def next_batch():
            nonlocal epoch, it
            while True:
                try:
                    return next(it)
                except StopIteration:
                    epoch += 1
                    ds.set_epoch(epoch)
                    it = iter(loader)

        step(next_batch())  # warm-up: workers start, kernels (and compiled graphs) are built
        sync(dev)
        wait = clips = cpu_s = 0.0
        t_start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = next_batch()
            wait += time.perf_counter() - t0
            clips += step(batch)
            sync(dev)  # so the next wait is not hidden behind queued GPU work
            cpu_s += batch["cpu_s"]
        total = time.perf_counter() - t_start
        del it, loader
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"preset": preset, "batch_size": batch_size, "workers": workers, "steps": steps, "clips": int(clips),
            "videos": videos, "amp": amp or "none", "train": train, "data_wait_s": wait, "worker_cpu_s": cpu_s,
            "files": files, "augment_on": augment_on, "clips_per_s": clips / total,
            "data_wait_fraction": wait / total, "seconds": total, "clips_per_core_s": clips / max(cpu_s, 1e-9),
            "device": device_name(dev)}


