"""Throughput and memory of our model (``uniformerv2 bench model``): inference or a training step, any preset,
compute dtype, autocast, compile mode and speed variant.

The training step is the trainer's own (``engine.train.train_step``: forward under autocast, summed
cross-entropy, backward, gradient clipping, AdamW from ``engine.optim.build_optimizer``), so a figure here is
what a training run pays per step, data aside. Comparisons with the official model code and the standard GPU
table live in ``benchmarks/`` beside the package (they import the official code, which the package never
does). Nothing here changes global state for longer than a call: TF32 and thread settings are restored.
"""
from __future__ import annotations

import time

import torch

from ..errors import UserError
from .common import device_name, device_of, peak_mb, sync, tf32

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("none", "full", "regional", "reduce-overhead", "max-autotune")


def _batches(batch: torch.Tensor, labels: torch.Tensor):
    """The same batch again and again, as the trainer's loader hands it over (already on the device)."""
    while True:
        yield {"video": batch, "label": labels}


def train_state(model, device, amp_dtype=None, lr: float = 1e-5):
    """A fresh ``TrainState`` around ``model``: the trainer's AdamW (``engine.optim.build_optimizer``), a
    constant learning rate ``lr``, a GradScaler that is on for fp16 autocast only."""
    from ..engine.optim import build_optimizer
    from ..engine.schedule import WarmupCosine
    from ..engine.state import TrainState

    if hasattr(model, "cfg"):
        optimizer = build_optimizer(model, lr)
    else:  # another implementation (the official code): the same AdamW over one group
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.05)
    return TrainState(model, optimizer, WarmupCosine(optimizer, lr, 10**9, 0, lr, lr),
                      torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16))


def training_step(model, forward, batch: torch.Tensor, amp_dtype, device):
    """A callable that runs one optimiser step of ``engine.train.train_step`` on ``batch`` (labels 0) through
    ``forward`` (the model or its compiled wrapper), with a fresh ``train_state`` around ``model``."""
    from ..engine.train import train_step

    state = train_state(model, device, amp_dtype)
    batches = _batches(batch, torch.zeros(batch.shape[0], dtype=torch.long, device=device))

    def step():
        return train_step(state, batches, forward=forward, device=device, amp_dtype=amp_dtype)
    step.state = state
    return step


def step_fn(model, batch, train: bool, amp_dtype, device):
    """One inference forward (``torch.inference_mode``) or one training step (``training_step``) under
    autocast to ``amp_dtype`` (None: no autocast)."""
    if train:
        return training_step(getattr(model, "_orig_mod", model), model, batch, amp_dtype, device)
    autocast = torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    def step():
        with torch.inference_mode(), autocast:
            return model(batch)
    return step


def time_steps(step, device, warmup: int, iters: int) -> float:
    """Mean seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
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


def _amp_dtype(amp: str | None):
    if amp in (None, "none", "fp32"):
        return None
    if amp not in DTYPES:
        raise UserError(f"autocast dtype must be one of none, bf16, fp16, got {amp!r}")
    return DTYPES[amp]


def measure(model, batch, *, train: bool, amp: str | None = None, compile="none", device, warmup: int = 2,
            iters: int = 5) -> dict:
    """Time ``model`` (ours or any module taking a video batch) as it is, under autocast to ``amp`` (None or
    "none": no autocast): clips/s, ms per batch, peak memory."""
    device = device_of(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    mode = "full" if compile is True else (compile or "none")
    if mode != "none":
        torch._dynamo.reset()  # fresh caches: earlier models must not use up the recompile limit
    runnable = compile_model(model, mode)
    with tf32(device.type == "cuda"):
        sec = time_steps(step_fn(runnable, batch, train, _amp_dtype(amp), device), device, warmup, iters)
    return {"clips_per_s": batch.shape[0] / sec, "ms_per_batch": 1000 * sec, "peak_mem_mb": peak_mb(device),
            "device": device_name(device), "compile": mode, "warmup": warmup, "iters": iters}


def bench_model(model, batch_size: int, amp: str | None = None, *, train: bool = False, compile="none",
                device: str | None = None, warmup: int = 2, iters: int = 5, optimize: bool = True,
                dpe: str = "auto", grad_ckpt=0, ckpt_policy: str = "branches", dtype: str = "fp32") -> dict:
    """clips/s and peak memory of inference (``torch.inference_mode``) or a training step (the trainer's
    ``train_step``).

    dtype: the compute dtype: the weights and the batch cast to it (as ``VideoClassifier`` / ``predict
        --dtype`` do); inference only — training keeps fp32 weights.
    amp: autocast to this dtype ("bf16", "fp16"; None or "none": no autocast), as ``train.precision`` does.
    optimize: apply ``accel.optimize`` first (the speed variants for inference or training, ``dpe``,
        activation checkpointing of ``grad_ckpt`` blocks with ``ckpt_policy``); False: the reference model.
    compile: "none", "full", "regional", "reduce-overhead" or "max-autotune" (or True for "full")."""
    from ..accel import optimize as apply_variants
    from ..accel import variants_in

    dev = device_of(device)
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    amp_dtype = _amp_dtype(amp)
    if train and dtype != "fp32":
        raise UserError(f"dtype {dtype} casts the weights, which is for inference: training keeps fp32 weights "
                        "(use autocast: amp='bf16')")
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise UserError(f"batch size and iterations must be >= 1 and warm-up >= 0, got {batch_size}, {iters}, "
                        f"{warmup}")
    mode = "full" if compile is True else (compile or "none")
    if mode not in COMPILE_MODES:
        raise UserError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    model = model.to(dev, DTYPES[dtype]).train(train)
    if optimize:
        # the in-place inference path needs eager mode without autocast
        inplace = mode == "none" and amp_dtype is None
        apply_variants(model, for_inference=not train, dpe=dpe, inplace=inplace,
                       grad_checkpointing=grad_ckpt if train else 0, checkpoint_policy=ckpt_policy)
    batch = make_batch(model, batch_size, dev, DTYPES[dtype])
    r = measure(model, batch, train=train, amp=amp, compile=mode, device=dev, warmup=warmup, iters=iters)
    r.update(workload="training" if train else "inference", batch_size=batch_size, dtype=dtype,
             amp=amp if amp_dtype is not None else "none", optimized=optimize, variants=variants_in(model),
             precision=_precision(dtype, amp if amp_dtype is not None else None))
    return r


def _precision(dtype: str, amp: str | None) -> str:
    """How a table names the arithmetic: "fp32", "bf16 weights", "bf16 autocast"."""
    if amp:
        return f"{amp} autocast" if dtype == "fp32" else f"{dtype} weights, {amp} autocast"
    return dtype if dtype == "fp32" else f"{dtype} weights"


TABLE_HEAD = ("| workload | impl | batch | precision | compile | clips/s | peak memory (GiB) | vs official |\n"
              "|---|---|---|---|---|---|---|---|")


def table_row(label, impl, bs, precision, r, ref=None) -> str:
    """A markdown row of :data:`TABLE_HEAD` for a result of :func:`measure` (``ref``: the official code's)."""
    gib = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb'] / 1024:.2f}"
    ratio = f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x" if ref else ""
    return f"| {label} | {impl} | {bs} | {precision} | {r['compile']} | {r['clips_per_s']:.1f} | {gib} | {ratio} |"
