"""Throughput and memory benchmarks (``uniformerv2 bench``), side by side with the official model code.

The official implementation is not shipped: pass the path of its ``slowfast/models/uniformerv2_model.py``
(``--official FILE``).  It is imported with two small stand-ins for what it imports from timm and SlowFast
(``DropPath`` and a logger), given our weights in the official layout, and checked to give the same
logits before it is timed.
"""
from __future__ import annotations

import importlib.util
import platform
import sys
import time
import types
from datetime import date

import torch

from .errors import UserError
from .model.factory import create_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def _step_fn(model, batch, train: bool, dtype, device):
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if not train:
        def step():
            with torch.inference_mode(), autocast:
                return model(batch)
        return step
    # fused AdamW on CUDA (one kernel for all parameters)
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


def make_batch(model, batch_size, device):
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g).to(device)


COMPILE_MODES = ("none", "full", "regional", "reduce-overhead", "max-autotune")


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


def configure(model, dpe: str | None = None, grad_ckpt=None, ckpt_policy: str | None = None):
    """Apply the speed-only switches: DPE implementation, activation checkpointing (blocks, policy)."""
    if dpe is not None and hasattr(model, "set_dpe_impl"):
        model.set_dpe_impl(dpe)
    if (grad_ckpt is not None or ckpt_policy is not None) and hasattr(model, "set_grad_checkpointing"):
        model.set_grad_checkpointing(True if grad_ckpt is None else grad_ckpt, policy=ckpt_policy)
    return model


def _device(device):
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"


def bench_model(model, batch_size: int, dtype: str = "fp32", train: bool = False, compile=False,
                device: str | None = None, warmup: int = 2, iters: int = 5, dpe: str | None = None,
                grad_ckpt=None, ckpt_policy: str | None = None, model_dtype: str | None = None) -> dict:
    """clips/s and peak memory of inference (``torch.inference_mode``) or a training step (forward,
    backward, AdamW — fused on CUDA) under autocast to ``dtype``.  ``model_dtype`` (inference only):
    cast the weights and the batch to that dtype and run without autocast, as ``VideoClassifier`` does.
    ``compile``: False/True or a :data:`COMPILE_MODES` name.  Works for the official model too (no
    ``dpe``/``grad_ckpt`` there)."""
    dev = _device(device)
    for d in (dtype, model_dtype or dtype):
        if d not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {d!r}")
    if model_dtype and train:
        raise UserError("model_dtype is for inference: training keeps fp32 weights under autocast (--dtype)")
    configure(model, dpe, grad_ckpt, ckpt_policy)
    model = model.to(dev).train(train)
    batch = make_batch(model, batch_size, dev)
    if model_dtype:
        model, batch, dtype = model.to(DTYPES[model_dtype]), batch.to(DTYPES[model_dtype]), "fp32"
    r = _bench(model, batch, train, dtype, compile, dev, warmup, iters)
    r["precision"] = f"{model_dtype} weights" if model_dtype else dtype
    return r


def _bench(model, batch, train, dtype, compile, dev, warmup, iters) -> dict:
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    mode = "full" if compile is True else (compile or "none")
    if mode != "none":
        torch._dynamo.reset()  # fresh caches: earlier models must not use up the recompile limit
    runnable = compile_model(model, mode)
    sec = time_steps(_step_fn(runnable, batch, train, DTYPES[dtype], dev), dev, warmup, iters)
    return {"clips_per_s": batch.shape[0] / sec, "ms_per_batch": 1000 * sec, "peak_mem_mb": _peak_mb(dev),
            "device": _device_name(dev), "compile": mode}


# ----------------------------------------------------------------------------- the official code
_OFFICIAL_BUILDERS = {"uniformerv2_b16": "uniformerv2_b16", "uniformerv2_l14": "uniformerv2_l14",
                      "uniformerv2_l14_336": "uniformerv2_l14_336"}


def _import_official(path):
    class DropPath(torch.nn.Module):  # timm's, for eval: identity
        def __init__(self, p=0.0):
            super().__init__()
            self.p = p

        def forward(self, x):
            return x

    stand_ins = {
        "timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
        "timm.models.layers": types.ModuleType("timm.models.layers"),
        "slowfast": types.ModuleType("slowfast"), "slowfast.utils": types.ModuleType("slowfast.utils"),
        "slowfast.utils.logging": types.ModuleType("slowfast.utils.logging"),
    }
    stand_ins["timm.models.layers"].DropPath = DropPath
    import logging

    stand_ins["slowfast.utils.logging"].get_logger = logging.getLogger
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        spec = importlib.util.spec_from_file_location("official_uniformerv2_model", path)
        if spec is None:
            raise UserError(f"cannot import official model code from {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def build_official(path, model) -> torch.nn.Module:
    """The official model for ``model``'s config, holding the same weights (checked: same logits)."""
    from .weights import export_official_state_dict

    cfg = model.cfg
    if cfg.arch not in _OFFICIAL_BUILDERS or cfg.fusion != "sequential":
        raise UserError(f"no official builder for {cfg.arch} with {cfg.fusion} fusion")
    module = _import_official(path)
    official = getattr(module, _OFFICIAL_BUILDERS[cfg.arch])(
        pretrained=False, t_size=cfg.num_frames, temporal_downsample=cfg.temporal_downsample,
        no_lmhra=cfg.local_mhra == "none", double_lmhra=cfg.local_mhra == "double",
        return_list=cfg.global_layers, n_layers=len(cfg.global_layers),
        mlp_dropout=[cfg.global_mlp_dropout] * len(cfg.global_layers), num_classes=cfg.num_classes,
        frozen=cfg.frozen_backbone)
    sd = {k[len("backbone."):]: v for k, v in export_official_state_dict(model).items()}
    official.load_state_dict(sd, strict=True)
    return official.eval()


def perturbed_model(preset: str, seed: int = 0, **options):
    """Our model with non-trivial values everywhere (zero-inits included), so every module is compared."""
    torch.manual_seed(seed)
    ours = create_model(preset, **options).eval()
    with torch.no_grad():
        for t in ours.state_dict().values():
            if t.is_floating_point() and t.dim() > 0:
                t.add_(torch.randn_like(t) * 0.02)
    return ours


def compare_with_official(official_path, preset: str, batch_size: int = 1, iters: int = 3,
                          threads: int | None = None) -> dict:
    """Ours vs the official code on this CPU, same weights, fp32 inference, alternating runs.

    Reports the best wall time and the best process CPU time of each side (CPU time is steadier on a
    loaded machine) and their ratios official/ours (> 1: ours is faster)."""
    if threads:
        torch.set_num_threads(threads)
    ours = perturbed_model(preset)
    official = build_official(official_path, ours)
    batch = make_batch(ours, batch_size, torch.device("cpu"))
    with torch.inference_mode():
        a, b = ours(batch), official(batch)
    max_diff = (a - b).abs().max().item()
    wall = {"ours": [], "official": []}
    cpu = {"ours": [], "official": []}
    with torch.inference_mode():
        for _ in range(iters):
            for name, m in (("ours", ours), ("official", official)):
                t0, c0 = time.perf_counter(), time.process_time()
                m(batch)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    return {"preset": preset, "batch_size": batch_size, "threads": torch.get_num_threads(),
            "max_abs_logit_diff": max_diff, "ours_ms": 1000 * best["ours"], "official_ms": 1000 * best["official"],
            "speedup": best["official"] / best["ours"], "ours_cpu_ms": 1000 * best_cpu["ours"],
            "official_cpu_ms": 1000 * best_cpu["official"], "speedup_cpu": best_cpu["official"] / best_cpu["ours"]}


def bench_official(official_path, preset: str, batch_size: int, dtype: str = "bf16", train: bool = False,
                   compile=False, device: str | None = None, warmup: int = 2, iters: int = 5,
                   ours=None) -> dict:
    """The official model code timed exactly like :func:`bench_model` (same weights as ``ours`` or a
    perturbed fresh model, same batch, same step)."""
    dev = _device(device)
    ours = ours if ours is not None else perturbed_model(preset)
    official = build_official(official_path, ours).to(dev).train(train)
    batch = make_batch(ours, batch_size, dev)
    return _bench(official, batch, train, dtype, compile, dev, warmup, iters)


# ----------------------------------------------------------------------------- input pipeline
def bench_pipeline(preset: str = "k400_b16_8x224", *, batch_size: int = 8, workers: int = 4, steps: int = 10,
                   videos: int = 32, dtype: str = "bf16", device: str | None = None, compile=False,
                   seconds: float = 4.0, workdir=None, train: bool = True, grad_ckpt=None,
                   model=None, verbose: bool = True) -> dict:
    """End-to-end training throughput with real decoding: ``videos`` generated Kinetics-like H.264 files
    (340×256, 30 fps), the preset's training transform (RandAugment, crop, flip) in ``workers``
    DataLoader processes shipping uint8 clips, normalisation on the device (``DeviceAugment``), then a
    training step.  Returns clips/s and the fraction of wall time the step loop waited for data."""
    import tempfile
    from pathlib import Path

    from .data import DeviceAugment, VideoListDataset, build_loader, build_transform
    from .data.benchmark import write_kinetics_like
    from .data.lists import VideoItem
    from .model.presets import get_preset

    dev = _device(device)
    preset_obj = get_preset(preset) if model is None else None
    model = model if model is not None else create_model(preset)
    dc = model.data_config
    configure(model, grad_ckpt=grad_ckpt)
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
        rand_augment = preset_obj.rand_augment if preset_obj is not None else dc.get("rand_augment")
        transform = build_transform("train", crop_size=dc["crop_size"], flip=False, rand_augment=rand_augment,
                                    output="uint8")
        ds = VideoListDataset(items, split="train", num_frames=dc["num_frames"], transform=transform, seed=0)
        loader = build_loader(ds, batch_size, shuffle=True, num_workers=workers, drop_last=True,
                              pin_memory=dev.type == "cuda")
        per_core = clip_rate_per_core(ds, min(videos, 2 * distinct))
        augment = DeviceAugment(dc["mean"], dc["std"], flip=dc.get("flip", True)).to(dev)
        model = model.to(dev).train(train)
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
            "clips_per_core_s": per_core, "device": _device_name(dev)}


def clip_rate_per_core(dataset, n: int) -> float:
    """Training clips one CPU core prepares per second (decode + transform, one torch thread, CPU time of
    this process): a recipe reaching R clips/s on the accelerator needs about R / rate cores of workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset[0]  # warm-up: codec and transform set-up
        c0 = time.process_time()
        for i in range(n):
            dataset[i % len(dataset)]
        return n / max(time.process_time() - c0, 1e-9)
    finally:
        torch.set_num_threads(threads)


def header() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    threads = "" if torch.cuda.is_available() else f", {torch.get_num_threads()} threads"
    return f"device: {dev}{threads}; torch {torch.__version__}; {date.today().isoformat()}"


# ----------------------------------------------------------------------------- the standard table
# (label, preset, batch, train, dtype, options for ours): the workloads.
SUITE = [
    ("inference B/16 8x224", "k400_b16_8x224", 64, False, "bf16", {}),
    ("inference SSv2 B/16 16x224", "ssv2_b16_16x224", 32, False, "bf16", {}),
    ("inference L/14 8x224", "k400_l14_8x224", 32, False, "bf16", {}),
    ("training B/16 8x224", "k400_b16_8x224", 32, True, "bf16", {}),
    ("training L/14 8x224", "k400_l14_8x224", 16, True, "bf16", {}),
]
TABLE_HEAD = ("| workload | impl | batch | dtype | compile | clips/s | peak memory (GiB) | vs official |\n"
              "|---|---|---|---|---|---|---|---|")


def _gib(r) -> str:
    return "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb'] / 1024:.2f}"


def table_row(label, impl, bs, dtype, r, ref=None) -> str:
    ratio = f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x" if ref else ""
    return (f"| {label} | {impl} | {bs} | {dtype} | {r['compile']} | {r['clips_per_s']:.1f} | {_gib(r)} | "
            f"{ratio} |")


def free_memory():
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_suite(rows=None, *, compile_modes=("none", "full"), official: str | None = None,
              official_compile: bool = False, device: str | None = None, warmup: int = 2, iters: int = 5,
              dpe: str | None = None, budget_s: float | None = None, echo=print) -> list[str]:
    """The standard table: each workload for ours in every ``compile_modes`` (and, with ``official``,
    the official code on the same weights, eager and optionally compiled) -> markdown lines.  Rows that
    would start after ``budget_s`` seconds are listed as skipped.  ``rows`` items are SUITE tuples
    (options may hold ``grad_ckpt`` and ``ckpt_policy``)."""
    rows = SUITE if rows is None else rows
    t0 = time.perf_counter()
    lines = [TABLE_HEAD]
    echo(TABLE_HEAD)

    def emit(line):
        lines.append(line)
        echo(line)

    for label, preset, bs, train, dtype, opts in rows:
        ref = None
        runs = []
        if official:
            runs.append(("official", "none"))
            if official_compile:
                runs.append(("official", "full"))
        runs += [("ours", m) for m in compile_modes]
        for impl, mode in runs:
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                emit(f"| {label} | {impl} | {bs} | {dtype} | {mode} | skipped (time budget) | | |")
                continue
            try:
                if impl == "official":
                    r = bench_official(official, preset, bs, dtype, train, mode, device, warmup, iters,
                                       ours=perturbed_model(preset))
                else:
                    r = bench_model(create_model(preset), bs, dtype, train, mode, device, warmup, iters,
                                    dpe=opts.get("dpe", dpe), grad_ckpt=opts.get("grad_ckpt"),
                                    ckpt_policy=opts.get("ckpt_policy"))
            except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
                emit(f"| {label} | {impl} | {bs} | {dtype} | {mode} | failed: {type(e).__name__}: "
                     f"{' '.join(str(e).split())[:120]} | | |")
                free_memory()
                continue
            if impl == "official" and mode == "none":
                ref = r
            name = impl
            if impl == "ours" and opts.get("grad_ckpt"):
                name += f" (ckpt {opts['grad_ckpt']} {opts.get('ckpt_policy') or 'branches'})"
            emit(table_row(label, name, bs, dtype, r, None if impl == "official" and mode == "none" else ref))
            free_memory()
    return lines
