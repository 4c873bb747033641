"""Throughput and memory of our model (``uniformerv2 bench``): inference or a training step, any preset,
precision, compile mode and speed variant, plus the input pipeline.

Comparisons with the official model code and the standard GPU table live in ``benchmarks/`` beside the
package (they import the official code, which the package never does).  Nothing here changes global
state: TF32 and thread settings are restored after each measurement.
"""
from __future__ import annotations

import contextlib
import platform
import sys
import time
from datetime import date

import numpy as np
import torch

from .errors import UserError
from .data.benchmark import kinetics_like_files
from .factory import create_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("none", "full", "regional", "reduce-overhead", "max-autotune")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)
    except ImportError:
        return None


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls/convolutions on CUDA inside the block (fp32 rows), restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def threads(n: int | None):
    """``torch.set_num_threads(n)`` inside the block (None: unchanged)."""
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def step_fn(model, batch, train: bool, dtype, device):
    """One inference forward (``torch.inference_mode``) or one training step (forward, backward, AdamW —
    fused on CUDA) under autocast to ``dtype`` (none for fp32)."""
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if not train:
        def step():
            with torch.inference_mode(), autocast:
                return model(batch)
        return step
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            fused=device.type == "cuda")
    target = torch.zeros(batch.shape[0], dtype=torch.long, device=device)

    def step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(batch).float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def time_steps(step, device, warmup: int, iters: int) -> float:
    """Mean seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def make_batch(model, batch_size, device, dtype=torch.float32):
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g).to(device, dtype)


def compile_model(model, mode: str = "full"):
    """``torch.compile`` the model: "full" (one graph, default inductor mode), "regional" (each block
    compiled on its own — identical blocks share one compiled graph, so compiling takes seconds, not
    minutes), "reduce-overhead" (one graph + CUDA graphs) or "max-autotune"."""
    if mode in ("none", None, False):
        return model
    if mode == "regional":
        for name in ("blocks", "global_blocks", "dpe"):
            for m in getattr(model, name, []):
                m.compile()
        return model
    if mode == "full":
        return torch.compile(model)
    if mode in ("reduce-overhead", "max-autotune"):
        return torch.compile(model, mode=mode)
    raise UserError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def device_of(device) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"


def measure(model, batch, *, train: bool, dtype: str, compile="none", device, warmup: int = 2,
            iters: int = 5) -> dict:
    """Time ``model`` (ours or any module taking a video batch) as it is: clips/s, ms per batch, peak memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    mode = "full" if compile is True else (compile or "none")
    if mode != "none":
        torch._dynamo.reset()  # fresh caches: earlier models must not use up the recompile limit
    runnable = compile_model(model, mode)
    with tf32(device.type == "cuda"):
        sec = time_steps(step_fn(runnable, batch, train, DTYPES[dtype], device), device, warmup, iters)
    return {"clips_per_s": batch.shape[0] / sec, "ms_per_batch": 1000 * sec, "peak_mem_mb": _peak_mb(device),
            "device": device_name(device), "compile": mode}


def bench_model(model, batch_size: int, dtype: str = "fp32", *, train: bool = False, compile="none",
                device: str | None = None, warmup: int = 2, iters: int = 5, optimize: bool = True,
                dpe: str = "auto", grad_ckpt=0, ckpt_policy: str = "branches",
                model_dtype: str | None = None) -> dict:
    """clips/s and peak memory of inference (``torch.inference_mode``) or a training step (forward,
    backward, AdamW — fused on CUDA) under autocast to ``dtype``.

    optimize: apply ``accel.optimize`` first (the speed variants for inference or training, ``dpe``,
        activation checkpointing of ``grad_ckpt`` blocks with ``ckpt_policy``); False: the reference model.
    model_dtype (inference only): cast the weights and the batch to that dtype and run without autocast,
        as ``VideoClassifier`` does.
    compile: "none", "full", "regional", "reduce-overhead" or "max-autotune" (or True for "full")."""
    from .accel import optimize as apply_variants
    from .accel import variants_in

    dev = device_of(device)
    for d in (dtype, model_dtype or dtype):
        if d not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {d!r}")
    if model_dtype and train:
        raise UserError("model_dtype is for inference: training keeps fp32 weights under autocast (--dtype)")
    mode = "full" if compile is True else (compile or "none")
    model = model.to(dev, DTYPES[model_dtype] if model_dtype else None).train(train)
    if optimize:
        # the in-place inference path needs eager mode without autocast
        inplace = mode == "none" and (dtype == "fp32" or model_dtype is not None)
        apply_variants(model, for_inference=not train, dpe=dpe, inplace=inplace,
                       grad_checkpointing=grad_ckpt if train else 0, checkpoint_policy=ckpt_policy)
    batch = make_batch(model, batch_size, dev, DTYPES[model_dtype] if model_dtype else torch.float32)
    r = measure(model, batch, train=train, dtype="fp32" if model_dtype else dtype, compile=mode, device=dev,
                warmup=warmup, iters=iters)
    r["precision"] = f"{model_dtype} weights" if model_dtype else dtype
    r["variants"] = variants_in(model)
    return r


# ----------------------------------------------------------------------------- input pipeline
FILES = ("raw", "prepared")
AUGMENT_ON = ("cpu", "device")


def pipeline_files(root, count: int = 4, seconds: float = 10.0, settings=None) -> dict:
    """Generated Kinetics-like files (``kinetics_like_files``) and their prepared versions (default
    ``PrepareSettings``; existing ones are reused): ``{"raw": [...], "prepared": [...], "psnr", "size_ratio"}``
    (mean PSNR of the prepared frames against the sources, bytes after / before; None where reused)."""
    from pathlib import Path

    from .data.transcode import PrepareSettings, transcode

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
    from .data import VideoListDataset, build_transform, collate, collate_clips
    from .data.lists import VideoItem

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
    from .data.loader import seed_worker

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

    from .data.device_augment import TrainAugment

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
                        _sync(dev)
                        c0, w0 = time.process_time(), time.perf_counter()
                        augment(batch, 0)
                        _sync(dev)
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
            "load": _load(), "rows": out}


def pipeline_table(result: dict) -> list[str]:
    lines = ["| files | augmentation | worker CPU ms per clip | training clips/s per core | device ms per clip |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        dev = "-" if r["device_ms"] is None else f"{r['device_ms']:.1f}"
        lines.append(f"| {r['files']} | {r['augment_on']} | {r['worker_ms']:.1f} | {r['clips_per_core_s']:.1f} | "
                     f"{dev} |")
    return lines


def _load() -> str:
    import os

    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def bench_pipeline(preset: str = "k400_b16_8x224", *, batch_size: int = 8, workers: int = 4, steps: int = 10,
                   videos: int = 32, dtype: str = "bf16", device: str | None = None, compile=False,
                   seconds: float = 4.0, workdir=None, train: bool = True, grad_ckpt=0, dpe: str = "auto",
                   model=None, files: str = "prepared", augment_on: str = "device", verbose: bool = True) -> dict:
    """End-to-end training throughput with real decoding: ``videos`` generated Kinetics-like H.264 files
    (340×256, 30 fps; ``files="prepared"``: transcoded by ``data.transcode`` first), read by ``workers``
    DataLoader processes that either run the preset's training transform (``augment_on="cpu"``) or only
    decode (``"device"``: ``TrainAugment`` on the device), then a training step. Returns clips/s, the fraction
    of wall time the step loop waited for data, and the workers' clips per CPU second."""
    import tempfile
    from pathlib import Path

    from .accel import optimize
    from .data.device_augment import ToDevice, TrainAugment
    from .data.loader import seed_worker

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
        autocast = torch.autocast(dev.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                fused=dev.type == "cuda")
        epoch = 0

        def step(batch):
            x, y = augment(batch, epoch)
            if not train:
                with torch.inference_mode(), autocast:
                    return step_model(x)
            with autocast:
                loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

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
        _sync(dev)
        wait = clips = cpu_s = 0.0
        t_start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = next_batch()
            wait += time.perf_counter() - t0
            step(batch)
            _sync(dev)  # so the next wait is not hidden behind queued GPU work
            clips += len(batch["label"]) * (dc.repeated_aug if augment_on == "device" else 1)
            cpu_s += batch["cpu_s"]
        total = time.perf_counter() - t_start
        del it, loader
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"preset": preset, "batch_size": batch_size, "workers": workers, "steps": steps, "clips": int(clips),
            "files": files, "augment_on": augment_on, "clips_per_s": clips / total,
            "data_wait_fraction": wait / total, "seconds": total, "clips_per_core_s": clips / max(cpu_s, 1e-9),
            "device": device_name(dev)}


def header() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    cores = "" if torch.cuda.is_available() else f", {torch.get_num_threads()} threads"
    return f"device: {dev}{cores}; torch {torch.__version__}; {date.today().isoformat()}"


TABLE_HEAD = ("| workload | impl | batch | dtype | compile | clips/s | peak memory (GiB) | vs official |\n"
              "|---|---|---|---|---|---|---|---|")


def table_row(label, impl, bs, dtype, r, ref=None) -> str:
    """A markdown row of :data:`TABLE_HEAD` for a result of :func:`measure` (``ref``: the official code's)."""
    gib = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb'] / 1024:.2f}"
    ratio = f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x" if ref else ""
    return f"| {label} | {impl} | {bs} | {dtype} | {r['compile']} | {r['clips_per_s']:.1f} | {gib} | {ratio} |"


def free_memory():
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- prepared datasets
def sparse_read_ms(paths, num_frames: int, draws: int = 6) -> float:
    """CPU milliseconds (this process, one decoder thread) to read one training clip of ``num_frames``
    segment-sampled frames, median over ``draws`` random draws per file."""
    from .data.decode import read_clip
    from .data.sampling import sparse_indices

    g = torch.Generator().manual_seed(0)
    times = []
    for p in paths:
        read_clip(p, lambda n: sparse_indices(n, num_frames, split="train", generator=g), threads=1, timeout=None)
        for _ in range(draws):
            c0 = time.process_time()
            read_clip(p, lambda n: sparse_indices(n, num_frames, split="train", generator=g), threads=1,
                      timeout=None)
            times.append(time.process_time() - c0)
    return 1e3 * float(sorted(times)[len(times) // 2])


def bench_prepare(*, intervals=(1, 2, 4, 8, 16, 32), frames=(8, 16, 32), files: int = 4, seconds: float = 10.0,
                  workdir=None, settings=None, draws: int = 6, sources=None, verbose: bool = True) -> dict:
    """The keyframe-interval table behind ``PrepareSettings``' default: for each interval, generated
    Kinetics-like files (or ``sources``) prepared with otherwise default settings; the mean PSNR against the
    sources, the size relative to them, and the CPU ms to read a sparse training clip of each length in
    ``frames`` (one core, ``sparse_read_ms``). The first row is the sources themselves."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from .data.transcode import PrepareSettings, transcode

    base = settings or PrepareSettings()
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    try:
        with threads(1):
            srcs = [Path(s) for s in sources] if sources else kinetics_like_files(root / "raw", files, seconds)
            size_in = sum(p.stat().st_size for p in srcs)
            rows = [{"keyframe_interval": "source", "psnr": None, "size_ratio": 1.0, "bytes": size_in,
                     "read_ms": {t: sparse_read_ms(srcs, t, draws) for t in frames}}]
            if verbose:
                print(_prepare_row(rows[-1], frames), file=sys.stderr)
            for k in intervals:
                s = dataclasses.replace(base, keyframe_interval=k)
                outs, psnrs = [], []
                for i, p in enumerate(srcs):
                    out = root / f"k{k}" / f"{i}_{p.name}"
                    psnrs.append(transcode(p, out, s, psnr_frames=16)["psnr"])
                    outs.append(out)
                size = sum(p.stat().st_size for p in outs)
                rows.append({"keyframe_interval": k, "psnr": float(np.mean(psnrs)), "size_ratio": size / size_in,
                             "bytes": size, "read_ms": {t: sparse_read_ms(outs, t, draws) for t in frames}})
                if verbose:
                    print(_prepare_row(rows[-1], frames), file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"rows": rows, "frames": list(frames), "files": len(srcs), "settings": dataclasses.asdict(base)}


def _prepare_row(r: dict, frames) -> str:
    psnr = "-" if r["psnr"] is None else f"{r['psnr']:.1f}"
    ms = " | ".join(f"{r['read_ms'][t]:.1f}" for t in frames)
    return f"| {r['keyframe_interval']} | {psnr} | {r['size_ratio']:.2f} | {ms} |"


def prepare_table(result: dict) -> list[str]:
    frames = result["frames"]
    head = ("| keyframe interval | PSNR (dB) | size vs source | "
            + " | ".join(f"CPU ms per {t}-frame clip" for t in frames) + " |")
    return [head, "|" + "---|" * (3 + len(frames))] + [_prepare_row(r, frames) for r in result["rows"]]
