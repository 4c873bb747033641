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
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
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


def bench_model(model, batch_size: int, dtype: str = "fp32", train: bool = False, compile: bool = False,
                device: str | None = None, warmup: int = 2, iters: int = 5) -> dict:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}")
    model = model.to(dev).train(train)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(dev)
    runnable = torch.compile(model) if compile else model
    batch = make_batch(model, batch_size, dev)
    sec = time_steps(_step_fn(runnable, batch, train, DTYPES[dtype], dev), dev, warmup, iters)
    return {"clips_per_s": batch_size / sec, "ms_per_batch": 1000 * sec, "peak_mem_mb": _peak_mb(dev),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"}


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


def compare_with_official(official_path, preset: str, batch_size: int = 1, iters: int = 3) -> dict:
    """Ours vs the official code on this machine, same weights, alternating runs; fp32 inference."""
    torch.manual_seed(0)
    ours = create_model(preset).eval()
    with torch.no_grad():  # non-trivial values everywhere, zero-inits included, so every module is compared
        for t in ours.state_dict().values():
            if t.is_floating_point() and t.dim() > 0:
                t.add_(torch.randn_like(t) * 0.02)
    official = build_official(official_path, ours)
    batch = make_batch(ours, batch_size, torch.device("cpu"))
    with torch.inference_mode():
        a, b = ours(batch), official(batch)
    max_diff = (a - b).abs().max().item()
    times = {"ours": [], "official": []}
    with torch.inference_mode():
        for m in (ours, official):
            m(batch)  # warm-up
        for _ in range(iters):
            for name, m in (("ours", ours), ("official", official)):
                t0 = time.perf_counter()
                m(batch)
                times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"preset": preset, "batch_size": batch_size, "max_abs_logit_diff": max_diff,
            "ours_ms": 1000 * best["ours"], "official_ms": 1000 * best["official"],
            "speedup": best["official"] / best["ours"]}


def header() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    return f"device: {dev}; torch {torch.__version__}; {date.today().isoformat()}"
