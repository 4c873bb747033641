"""The official UniFormerV2 model code beside ours: same weights, same batch, same step.

The official implementation is not part of the package (nor of this repository): pass the path of its
``slowfast/models/uniformerv2_model.py`` (OpenGVLab/UniFormerV2).  It is imported with two small stand-ins
for what it imports from timm and SlowFast (``DropPath``, for eval the identity, and a logger), put in
``sys.modules`` only while it is imported.  ``build_official`` gives it our weights in the official layout
and the callers check the logits agree before timing anything.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
import sys
import time
import types

import torch

from uniformerv2 import create_model, export_official_state_dict
from uniformerv2.accel import optimize
from uniformerv2.bench import device_of, make_batch, measure
from uniformerv2.errors import UserError

def import_official(path):
    """The official model module, imported from ``path`` with stand-ins for timm's DropPath and
    SlowFast's logging."""
    class DropPath(torch.nn.Module):  # timm's, for eval: the identity
        def __init__(self, p=0.0):
            super().__init__()
            self.p = p

        def forward(self, x):
            return x

    stand_ins = {name: types.ModuleType(name) for name in
                 ("timm", "timm.models", "timm.models.layers", "slowfast", "slowfast.utils",
                  "slowfast.utils.logging")}
    stand_ins["timm.models.layers"].DropPath = DropPath
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
    """The official ``VisionTransformer`` (what its ``uniformerv2_b16``/``_l14`` builders make) for
    ``model``'s config, any size, holding the same weights."""
    cfg = model.cfg
    if cfg.fusion != "sequential":
        raise UserError(f"the official code has only the sequential fusion, not {cfg.fusion!r}")
    n = len(cfg.global_layers)
    official = import_official(path).VisionTransformer(
        input_resolution=cfg.img_size, patch_size=cfg.patch_size, width=cfg.embed_dim, layers=cfg.depth,
        heads=cfg.num_heads, output_dim=512, t_size=cfg.num_frames, dw_reduction=cfg.local_mhra_reduction,
        temporal_downsample=cfg.temporal_downsample, no_lmhra=cfg.local_mhra == "none",
        double_lmhra=cfg.local_mhra == "double", return_list=cfg.global_layers, n_layers=n, n_dim=cfg.embed_dim,
        n_head=cfg.num_heads, mlp_factor=cfg.mlp_ratio, mlp_dropout=[cfg.global_mlp_dropout] * n,
        cls_dropout=cfg.head_dropout, num_classes=cfg.num_classes, frozen=cfg.frozen_backbone)
    sd = {k[len("backbone."):]: v for k, v in export_official_state_dict(model).items()}
    official.load_state_dict(sd, strict=True)
    return official.eval()


def perturbed_model(preset: str, seed: int = 0, **options):
    """Our reference model with non-trivial values everywhere (zero-inits included), so every module is
    compared."""
    torch.manual_seed(seed)
    ours = create_model(preset, **options).eval()
    with torch.no_grad():
        for t in ours.state_dict().values():
            if t.is_floating_point() and t.dim() > 0:
                t.add_(torch.randn_like(t) * 0.02)
    return ours


SIDES = ("official", "reference", "optimized", "no_inplace")
BACKEND_SIDES = {"onnxruntime": "none", "int8": "int8"}   # the engine's onnxruntime backend, fp32 and int8


def backend_runner(model, quantize: str, cache=None):
    """A callable ``batch -> logits`` over the ONNX Runtime session of the engine's onnxruntime backend for
    ``model`` (its cached ONNX file, exported when missing; the session with the torch threads of the moment)."""
    from uniformerv2.inference.runtime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(model, "cpu", torch.float32, model.data_config, quantize=quantize, cache=cache)
    session = engine.session()

    def run(batch):
        return torch.from_numpy(session.run(["logits"], {"video": batch.numpy()})[0])

    run.path = engine.path
    return run


def engine_batch(preset: str) -> int:
    """The views per forward pass the inference engine uses on the CPU for ``preset``'s test views
    (``Engine.views_per_pass``)."""
    from uniformerv2.inference.engine import Engine

    model = create_model(preset)
    engine = Engine(model, torch.device("cpu"), torch.float32, model.data_config)
    return engine.views_per_pass(engine.data.test_clips * engine.data.test_crops)


def compare_on_cpu(official_path, preset: str, batch_size: int = 1, iters: int = 3, sides=SIDES, cache=None,
                   reduce=min) -> dict:
    """fp32 inference on this CPU, same weights, one process: the official code and our ``sides``, run in turn
    ``iters`` times after one untimed round (which also checks the logits):

    - ``reference``: our reference model; ``optimized``: with ``accel.optimize(for_inference=True)`` (the torch
      backend, what ``predict`` runs); ``no_inplace``: optimized without the in-place blocks;
    - ``onnxruntime`` / ``int8``: the engine's onnxruntime backend (its cached ONNX file under ONNX Runtime,
      fp32 / int8 weights; ``cache``: the folder of those files).

    Reports each side's wall time and process CPU time over the rounds, reduced by ``reduce`` (``min``: the
    best; ``statistics.median``), the largest logit difference to the official code, and latency ratios
    ours/official (< 1: ours is faster)."""
    reference = perturbed_model(preset)
    official = build_official(official_path, reference)
    makers = {"reference": lambda: reference,
              "optimized": lambda: optimize(copy.deepcopy(reference), for_inference=True),
              "no_inplace": lambda: optimize(copy.deepcopy(reference), for_inference=True, inplace=False),
              **{k: (lambda q=q: backend_runner(reference, q, cache)) for k, q in BACKEND_SIDES.items()}}
    unknown = [k for k in sides if k != "official" and k not in makers]
    if unknown:
        raise UserError(f"unknown side(s) {', '.join(unknown)}; known: {', '.join(['official', *makers])}")
    models = {"official": official, **{k: makers[k]() for k in sides if k != "official"}}
    batch = make_batch(reference, batch_size, torch.device("cpu"))
    wall = {k: [] for k in models}
    cpu = {k: [] for k in models}
    with torch.inference_mode():
        logits = {k: m(batch) for k, m in models.items()}
        for _ in range(iters):
            for name, m in models.items():
                t0, c0 = time.perf_counter(), time.process_time()
                m(batch)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    out = {"preset": preset, "batch_size": batch_size, "threads": torch.get_num_threads(), "iters": iters,
           "reduce": reduce.__name__, "sides": list(models), "times_s": wall, "cpu_times_s": cpu}
    for name in models:
        out[f"{name}_ms"] = 1000 * reduce(wall[name])
        out[f"{name}_cpu_ms"] = 1000 * reduce(cpu[name])
        out[f"{name}_views_per_s"] = batch_size / reduce(wall[name])
        if name != "official":
            out[f"{name}_max_abs_logit_diff"] = (logits[name] - logits["official"]).abs().max().item()
            out[f"{name}_latency_ratio"] = reduce(wall[name]) / reduce(wall["official"])
            out[f"{name}_cpu_ratio"] = reduce(cpu[name]) / reduce(cpu["official"])
    return out


def bench_official(official_path, preset: str, batch_size: int, dtype: str | None = "bf16", *, train: bool = False,
                   compile="none", device: str | None = None, warmup: int = 2, iters: int = 5, ours=None) -> dict:
    """The official model code timed exactly like ``uniformerv2.bench.bench_model`` (same weights as
    ``ours`` or a perturbed fresh model, same batch, same step: the trainer's for training) under autocast to
    ``dtype``."""
    dev = device_of(device)
    ours = ours if ours is not None else perturbed_model(preset)
    official = build_official(official_path, ours).to(dev).train(train)
    return measure(official, make_batch(ours, batch_size, dev), train=train, amp=dtype, compile=compile,
                   device=dev, warmup=warmup, iters=iters)
