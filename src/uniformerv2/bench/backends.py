"""The engine's backends side by side (``uniformerv2 bench backends``): torch, ONNX Runtime fp32 and ONNX Runtime
int8 on the same model and the same views, each timed through ``Engine.forward_views`` (normalisation, forward
pass, softmax), in alternating rounds so that a change of the machine's load hits every backend alike.

Per backend: the median latency of one forward pass of ``batch`` views, its ratio to torch, the largest
absolute logit and probability difference to torch and the share of views whose top-1 class agrees with
torch's, over the timed inputs. Random weights (seeded) unless a model is given: on random weights the
differences say how far the numbers move, not what that costs in accuracy.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

CASES = (("torch", "none"), ("onnxruntime", "none"), ("onnxruntime", "int8"))


def bench_backends(model_fn, *, batch: int = 1, iters: int = 5, warmup: int = 1, cases=CASES, cache=None,
                   seed: int = 0, verbose: bool = False) -> dict:
    """``model_fn()`` -> a fresh model (each backend gets its own copy). Returns ``{"rows": [...], ...}``."""
    from ..inference import VideoClassifier

    engines, setup = {}, {}
    for backend, quantize in cases:
        name = _name(backend, quantize)
        t0 = time.perf_counter()
        clf = VideoClassifier(model_fn(), device="cpu", dtype="fp32", backend=backend, quantize=quantize, cache=cache)
        setup[name] = time.perf_counter() - t0
        engines[name] = clf.engine
        if verbose:
            print(f"{name}: ready in {setup[name]:.1f} s", flush=True)
    model = next(iter(engines.values())).model
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, model.num_frames, model.img_size, model.img_size)
    inputs = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=g) for _ in range(iters)]
    times = {n: [] for n in engines}
    outputs = {n: [] for n in engines}
    for n, e in engines.items():
        for _ in range(warmup):
            e.forward_views(inputs[0])
    for i, x in enumerate(inputs):   # alternating: each round runs every backend once
        for n, e in engines.items():
            t0 = time.perf_counter()
            out = e.forward_views(x)
            times[n].append(time.perf_counter() - t0)
            outputs[n].append(out)
        if verbose:
            print(f"round {i + 1}/{iters}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in engines), flush=True)
    base = next(iter(engines))
    ref_logits = np.concatenate([o[1] for o in outputs[base]])
    ref_probs = np.concatenate([o[2] for o in outputs[base]])
    rows = []
    for n in engines:
        logits = np.concatenate([o[1] for o in outputs[n]])
        probs = np.concatenate([o[2] for o in outputs[n]])
        med = statistics.median(times[n])
        rows.append({"backend": n, "latency_s": med, "ratio": med / statistics.median(times[base]),
                     "times_s": times[n], "setup_s": setup[n],
                     "max_logit_diff": float(np.abs(logits - ref_logits).max()),
                     "max_prob_diff": float(np.abs(probs - ref_probs).max()),
                     "top1_agreement": float((logits.argmax(1) == ref_logits.argmax(1)).mean())})
    return {"rows": rows, "batch": batch, "iters": iters, "warmup": warmup, "threads": torch.get_num_threads(),
            "views": len(inputs) * batch}


def _name(backend: str, quantize: str) -> str:
    return backend if quantize == "none" else f"{backend} {quantize}"


def backends_table(r: dict) -> list[str]:
    out = ["| backend | latency (s) | ratio to torch | max logit diff | max prob diff | top-1 agreement | setup (s) |",
           "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        out.append(f"| {row['backend']} | {row['latency_s']:.4f} | {row['ratio']:.2f} | {row['max_logit_diff']:.2g} "
                   f"| {row['max_prob_diff']:.2g} | {100 * row['top1_agreement']:.0f}% | {row['setup_s']:.1f} |")
    return out
