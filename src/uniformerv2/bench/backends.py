"""The engine's backends side by side (``uniformerv2 bench backends``): torch, ONNX Runtime fp32 and ONNX Runtime
int8 on the same model and the same views, each timed through ``Engine.forward_views`` (normalisation, forward
pass, softmax), in alternating rounds so that a change of the machine's load hits every backend alike.

Per backend: the median latency of one forward pass of ``batch`` views, its ratio to torch, the largest
absolute logit and probability difference to torch and the share of views whose top-1 class agrees with
torch's, over the timed inputs. Random weights (seeded) unless a model is given: on random weights the
differences say how far the numbers move, not what that costs in accuracy.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
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


def backend_accuracy(model_dir, list_path, *, root: str = "", cases=CASES, cache=None, workers: int | None = 0,
                     list_labels=None) -> dict:
    """The accuracy cost of each backend on a trained model: the labelled videos of ``list_path`` (read as
    ``eval`` reads a list) classified through every backend of ``cases`` with the model's default views. Per
    backend: top-1, top-1 agreement with torch and with ONNX Runtime fp32, the largest probability difference
    to torch."""
    from ..engine.data import labelled_items
    from ..errors import UserError
    from ..factory import load_model
    from ..inference import VideoClassifier

    probs, labels = {}, None
    for backend, quantize in cases:
        clf = VideoClassifier(load_model(model_dir), device="cpu", backend=backend, quantize=quantize, cache=cache)
        if labels is None:
            items, _ = labelled_items(list_path, root=root, model_labels=clf.model.labels, list_labels=list_labels)
            paths, labels = [it.path for it in items], np.array([it.label for it in items])
        results = list(clf.predict_many(paths, workers=workers))
        bad = [r for r in results if not r.ok]
        if bad:
            raise UserError(f"{len(bad)} of {len(results)} videos of {list_path} cannot be read (first: {bad[0].path}: "
                            f"{bad[0].error}); relative paths are resolved against --root")
        probs[_name(backend, quantize)] = np.stack([r.probs for r in results])
    ref = probs[_name(*cases[0])].argmax(1)
    fp32 = probs.get(_name("onnxruntime", "none"), probs[_name(*cases[0])]).argmax(1)
    first = probs[_name(*cases[0])]
    return {"videos": len(labels), "backends": {
        name: {"top1": float(100 * (p.argmax(1) == labels).mean()),
               "agreement_with_torch": float(100 * (p.argmax(1) == ref).mean()),
               "agreement_with_fp32": float(100 * (p.argmax(1) == fp32).mean()),
               "max_prob_diff": float(np.abs(p - first).max())} for name, p in probs.items()}}


def accuracy_table(r: dict) -> list[str]:
    lines = ["| backend | top-1 | top-1 agreement with torch | with fp32 ONNX Runtime | max prob diff to torch |",
             "|---|---|---|---|---|"]
    for name, b in r["backends"].items():
        lines.append(f"| {name} | {b['top1']:.2f} | {b['agreement_with_torch']:.1f}% | "
                     f"{b['agreement_with_fp32']:.1f}% | {b['max_prob_diff']:.2g} |")
    return lines


def _backend_args(backend: str, quantize: str) -> list[str]:
    return [] if backend == "torch" else ["--backend", backend, *(["--quantize", quantize] if quantize != "none" else [])]


def bench_predict(model: str, videos, *, cases=CASES, rounds: int = 3, extra=(), verbose: bool = False) -> dict:
    """The whole ``uniformerv2 predict VIDEOS --model M`` command per backend, as a user runs it: a new process
    each time (interpreter start, imports, model load, the ONNX Runtime session over the cached file, decoding,
    the forward passes, the output). One untimed run per backend first (it exports what the cache folder
    lacks), then ``rounds`` alternating rounds, each running every backend once; median wall time per backend,
    its ratio to the first backend's, and the top-1 agreement and largest top-5 probability difference of its
    output with the first backend's."""
    from ..errors import UserError

    videos = [str(v) for v in videos]
    base = [sys.executable, "-m", "uniformerv2", "predict", *videos, "--model", str(model), "--device", "cpu", "--json",
            "--quiet", "--top-k", "5", *extra]
    names = [_name(b, q) for b, q in cases]
    commands = {n: base + _backend_args(b, q) for n, (b, q) in zip(names, cases)}

    def run(name):
        t0 = time.perf_counter()
        r = subprocess.run(commands[name], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines() or ["no output"]
            raise UserError(f"predict with {name} failed (exit {r.returncode}): {lines[-1]}")
        return took, [v["top_k"] for v in json.loads(r.stdout)]

    first = {}
    for n in names:
        took, first[n] = run(n)
        if verbose:
            print(f"{n}: first run {took:.1f} s (untimed)", flush=True)
    times = {n: [] for n in names}
    for i in range(rounds):
        for n in names:
            took, out = run(n)
            times[n].append(took)
            if out != first[n]:
                raise UserError(f"predict with {n} printed another result on a second run")
        if verbose:
            print(f"round {i + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in names), flush=True)
    ref = first[names[0]]
    rows = []
    for n in names:
        diffs = [abs(a["prob"] - b["prob"]) for g, w in zip(first[n], ref) for a, b in zip(g, w)
                 if a["label"] == b["label"]]
        rows.append({"backend": n, "wall_s": statistics.median(times[n]), "times_s": times[n],
                     "ratio": statistics.median(times[n]) / statistics.median(times[names[0]]),
                     "top1": [g[0]["label"] for g in first[n]],
                     "top1_agreement": sum(g[0]["label"] == w[0]["label"] for g, w in zip(first[n], ref)) / len(ref),
                     "max_prob_diff": max(diffs) if diffs else None, "command": " ".join(commands[n][1:])})
    return {"rows": rows, "videos": videos, "rounds": rounds, "cores": os.cpu_count()}


def predict_table(r: dict) -> list[str]:
    out = ["| backend | predict wall (s) | ratio to torch | top-1 | max top-5 prob diff |", "|---|---|---|---|---|"]
    for row in r["rows"]:
        diff = "-" if row["max_prob_diff"] is None else f"{row['max_prob_diff']:.2g}"
        out.append(f"| {row['backend']} | {row['wall_s']:.2f} | {row['ratio']:.2f} | {', '.join(row['top1'])} | "
                   f"{diff} |")
    return out
