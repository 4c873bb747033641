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

import torch

from .errors import UserError
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
def bench_pipeline(preset: str = "k400_b16_8x224", *, batch_size: int = 8, workers: int = 4, steps: int = 10,
                   videos: int = 32, dtype: str = "bf16", device: str | None = None, compile=False,
                   seconds: float = 4.0, workdir=None, train: bool = True, grad_ckpt=0, dpe: str = "auto",
                   model=None, verbose: bool = True) -> dict:
    """End-to-end training throughput with real decoding: ``videos`` generated Kinetics-like H.264 files
    (340×256, 30 fps), the preset's training transform (RandAugment, crop, flip) in ``workers``
    DataLoader processes shipping uint8 clips, normalisation on the device (``DeviceAugment``), then a
    training step.  Returns clips/s and the fraction of wall time the step loop waited for data."""
    import tempfile
    from pathlib import Path

    from .accel import optimize
    from .data import DeviceAugment, VideoListDataset, build_loader, build_transform
    from .data.benchmark import write_kinetics_like
    from .data.lists import VideoItem

    dev = device_of(device)
    model = model if model is not None else create_model(preset)
    dc = model.data_config
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        distinct = min(videos, 8)  # encoding is slow on small machines: reuse a few distinct files
        paths = [root / f"v{i}.mp4" for i in range(distinct)]
        for i, p in enumerate(paths):
            if not p.exists():
                write_kinetics_like(p, gop=250 if i % 2 else 30, seconds=seconds, seed=i)
        items = [VideoItem(str(paths[i % distinct]), i % model.num_classes) for i in range(videos)]
        if verbose:
            print(f"generated {distinct} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        transform = build_transform("train", crop_size=dc.crop_size, flip=False, rand_augment=dc.rand_augment,
                                    output="uint8")
        ds = VideoListDataset(items, split="train", num_frames=dc.num_frames, transform=transform, seed=0)
        loader = build_loader(ds, batch_size, shuffle=True, num_workers=workers, drop_last=True,
                              pin_memory=dev.type == "cuda")
        per_core = clip_rate_per_core(ds, min(videos, 2 * distinct))
        augment = DeviceAugment(dc.mean, dc.std, flip=dc.flip).to(dev)
        model = model.to(dev).train(train)
        optimize(model, for_inference=not train, inplace=False, dpe=dpe, grad_checkpointing=grad_ckpt if train else 0)
        step_model = compile_model(model, "full" if compile is True else (compile or "none"))
        autocast = torch.autocast(dev.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                fused=dev.type == "cuda")

        def step(batch):
            x = augment(batch["video"].to(dev, non_blocking=True))
            y = batch["label"].to(dev, non_blocking=True)
            if not train:
                with torch.inference_mode(), autocast:
                    return step_model(x)
            with autocast:
                loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        epoch, it = 0, iter(loader)

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
        wait = clips = 0.0
        t_start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = next_batch()
            wait += time.perf_counter() - t0
            step(batch)
            _sync(dev)  # so the next wait is not hidden behind queued GPU work
            clips += batch["video"].shape[0]
        total = time.perf_counter() - t_start
        del it, loader
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"preset": preset, "batch_size": batch_size, "workers": workers, "steps": steps, "clips": int(clips),
            "clips_per_s": clips / total, "data_wait_fraction": wait / total, "seconds": total,
            "clips_per_core_s": per_core, "device": device_name(dev)}


def clip_rate_per_core(dataset, n: int) -> float:
    """Training clips one CPU core prepares per second (decode + transform, one torch thread, CPU time of
    this process): a recipe reaching R clips/s on the accelerator needs about R / rate cores of workers."""
    with threads(1):
        dataset[0]  # warm-up: codec and transform set-up
        c0 = time.process_time()
        for i in range(n):
            dataset[i % len(dataset)]
        return n / max(time.process_time() - c0, 1e-9)


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
