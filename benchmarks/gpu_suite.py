"""One GPU session, one script: the performance table, side by side with the official model code.

    python benchmarks/gpu_suite.py --official /path/to/slowfast/models/uniformerv2_model.py --out gpu_table.md

Phases, in priority order, each skipped (and listed as skipped) once ``--budget`` seconds have passed:
  1. numerics: bf16 logits vs fp32 (B/16, perturbed weights; autocast eager and regionally compiled, and
     bf16 weights without autocast), ours vs the official code in fp32 (TF32 off) on the same weights;
  2. DPE implementations: each checked against F.conv3d in fp32, then the op as the model runs it (tokens in,
     tokens with the DPE added out) on (64·8, 197, 768) bf16, eager and compiled, and whole-model B/16 bs64
     inference with each — the fastest eager one is used for eager rows, the fastest compiled one for
     compiled rows;
  3. the table, eager: official code and ours for every workload (same weights, same batch, same step),
     and for inference ours with bf16 weights (no autocast: what `predict` runs);
  4. the table, compiled: ours ("full" for B/16 inference, "regional" elsewhere: each block compiled once
     and reused, which keeps compile time to seconds), ours with bf16 weights and the official code
     compiled for B/16 inference;
  5. training memory: activation checkpointing variants (blocks x policy) for B/16 bs32 and L/14 bs16;
  6. CUDA graphs (compile mode "reduce-overhead") for B/16 inference;
  7. input pipeline: a B/16 training step fed by real decoding of generated videos over N workers (needs
     PyAV on the GPU machine).
Everything goes to stdout as it is measured and, at the end, as markdown to ``--out``.
Iterations are small on purpose (``--iters``); ``--budget`` bounds the whole run (phases past it are skipped).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import traceback

import torch

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official import bench_official, build_official, perturbed_model  # noqa: E402
from suite import SUITE  # noqa: E402

from uniformerv2 import create_model  # noqa: E402
from uniformerv2.accel import optimize, swap  # noqa: E402
from uniformerv2.accel.dpe import TritonDPE  # noqa: E402
from uniformerv2.bench import bench_model, compile_model, free_memory, header, make_batch  # noqa: E402
from uniformerv2.bench.pipeline import bench_pipeline  # noqa: E402
from uniformerv2.model.layers import DPE  # noqa: E402

DPE_IMPLS = ("conv", "triton")

T0 = time.perf_counter()
OUT: list[str] = []
DEV = "cuda"
B16 = "k400_b16_8x224"  # --dry-run swaps in tiny presets and the CPU to check the script itself
L14 = "k400_l14_8x224"
SUITE_ROWS = SUITE
DPE_SHAPE = (64, 8, 14, 768)


def say(line: str = ""):
    if line.startswith("## ") and OUT and OUT[-1] != "":
        say()
    print(line, flush=True)
    OUT.append(line)


def elapsed() -> float:
    return time.perf_counter() - T0


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def cuda_ms(fn, warmup=3, iters=20) -> float:
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters * 1e3


def guarded(name, fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a failing measurement must not lose the rest
        say(f"<!-- {name} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]} -->")
        traceback.print_exc(file=sys.stderr)
        free_memory()
        return None


# ----------------------------------------------------------------------------- phases
def numerics(args):
    say("## Numerics")
    model = perturbed_model(B16).to(DEV)
    x = make_batch(model, 4, torch.device(DEV))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        ref = model(x).float()
        if args.official:
            def side_by_side():
                official = build_official(args.official, model).to(DEV)
                off = official(x).float()
                say(f"- fp32 (TF32 off), ours vs official code, same weights: max |logit diff| "
                    f"{(off - ref).abs().max().item():.2e} (logit scale {ref.abs().max().item():.2f})")
            guarded("official logits", side_by_side)
        with torch.autocast(DEV, dtype=torch.bfloat16):
            low = model(x).float()
            torch._dynamo.reset()
            compiled = compile_model(model, "regional")  # seconds to compile; same kernels as in the table
            low_c = compiled(x).float()
        native = optimize(copy.deepcopy(model).to(torch.bfloat16), for_inference=True)  # what `predict` runs
        low_n = native(x.to(torch.bfloat16)).float()
    for name, y in (("autocast eager", low), ("autocast compiled", low_c), ("weights, no autocast", low_n)):
        say(f"- bf16 {name}: relative error of logits vs fp32 = {((y - ref).norm() / ref.norm()).item():.4f} "
            f"(target < 0.02); top-1 agreement {(y.argmax(1) == ref.argmax(1)).float().mean().item():.2f}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    del model, compiled, native
    free_memory()


def dpe_comparison(args) -> dict:
    say("## DPE implementations")
    say("| impl | DPE + add alone eager (ms) | same compiled (ms) | B/16 bs64 bf16 eager (clips/s) | "
        "same, DPE compiled (clips/s) |")
    say("|---|---|---|---|---|")
    b, t, g, c = DPE_SHAPE
    tokens = torch.randn(b * t, 1 + g * g, c, device=DEV, dtype=torch.bfloat16)
    small = torch.randn(2 * t, 1 + g * g, c, device=DEV)
    reference = DPE(c).to(DEV)
    with torch.inference_mode():
        expected = reference(small, t)
    best, rates = {"eager": "conv", "compiled": "conv"}, {"eager": 0.0, "compiled": 0.0}
    for impl in DPE_IMPLS:
        if elapsed() > args.budget:
            say(f"| {impl} | skipped (time budget) | | | |")
            continue
        if impl == "triton" and DEV != "cuda":
            say(f"| {impl} | skipped (needs CUDA) | | | |")
            continue
        m = DPE(c).to(DEV)
        if impl == "triton":
            swap(m, TritonDPE)
        m.load_state_dict(reference.state_dict())
        with torch.inference_mode():
            err = (m(small, t) - expected).abs().max().item()
        say(f"<!-- DPE {impl}: fp32 max |diff| vs conv {err:.1e} -->")
        m = m.to(torch.bfloat16)
        with torch.inference_mode():
            eager = guarded(f"dpe {impl} eager", lambda: cuda_ms(lambda: m(tokens, t)))
            torch._dynamo.reset()
            cm = torch.compile(m)
            comp = guarded(f"dpe {impl} compiled", lambda: cuda_ms(lambda: cm(tokens, t)))
        model = create_model(B16)
        r_e = guarded(f"model {impl} eager", lambda: bench_model(model, b, "bf16", device=DEV, warmup=2,
                                                                 iters=args.iters, dpe=impl))
        for d in model.dpe:
            d.compile()
        r_c = guarded(f"model {impl} dpe-compiled",
                      lambda: bench_model(model, b, "bf16", device=DEV, warmup=2, iters=args.iters, dpe=impl,
                                          optimize=False))
        fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        say(f"| {impl} | {fmt(eager, '{:.2f}')} | {fmt(comp, '{:.2f}')} | "
            f"{fmt(r_e and r_e['clips_per_s'], '{:.0f}')} | {fmt(r_c and r_c['clips_per_s'], '{:.0f}')} |")
        for mode, r in (("eager", r_e), ("compiled", r_c)):
            if r and r["clips_per_s"] > rates[mode]:
                best[mode], rates[mode] = impl, r["clips_per_s"]
        del model, m, cm
        free_memory()
    bound = 2 * b * t * g * g * c * 2 / 3.35e12 * 1e3
    say(f"\nBandwidth bound of one DPE call (read + write bf16 at 3.35 TB/s): {bound:.3f} ms. Chosen: "
        f"`{best['eager']}` for eager rows, `{best['compiled']}` for compiled rows.")
    return best


ROWS: dict = {}  # (workload, impl, compile, note) -> result


def record(label, impl, mode, r, note=""):
    ROWS[(label, impl, mode, note)] = r
    ref = ROWS.get((label, "official", "none", ""))
    ratio = f" ({r['clips_per_s'] / ref['clips_per_s']:.2f}x official eager)" if ref and impl != "official" else ""
    say(f"  {label} | {impl}{note} | {mode}: {r['clips_per_s']:.1f} clips/s, {r['peak_mem_mb'] / 1024:.2f} GiB{ratio}")


def table_phase(args, dpe, compiled: bool):
    """Eager: official, ours, and for inference ours with bf16 weights (no autocast: what `predict` runs).
    Compiled: ours ("full" for B/16 inference, else "regional"), the official code for B/16 inference,
    and ours with bf16 weights (regional) for B/16 inference."""
    for label, preset, bs, train, dtype, opts in SUITE_ROWS:
        b16_inference = label.startswith("inference B/16")
        if compiled:
            mode = "full" if (b16_inference or args.compile_all_full) else "regional"
            runs = [("ours", mode, None)]
            if b16_inference:
                runs += [("ours", "regional", "bf16")] + ([("official", "full", None)] if args.official else [])
        else:
            runs = ([("official", "none", None)] if args.official else []) + [("ours", "none", None)]
            runs += [] if train else [("ours", "none", "bf16")]
        for impl, mode, model_dtype in runs:
            note = f" ({model_dtype} weights)" if model_dtype else ""
            if elapsed() > args.budget:
                say(f"  {label} | {impl}{note} | {mode}: skipped (time budget)")
                ROWS[(label, impl, mode, note)] = None
                continue
            if impl == "official":
                r = guarded(f"{label} official {mode}", lambda: bench_official(
                    args.official, preset, bs, dtype, train=train, compile=mode, device=DEV, warmup=args.warmup,
                    iters=args.iters))
            else:
                impl_dpe = dpe["compiled" if mode != "none" else "eager"]
                r = guarded(f"{label} ours {mode}", lambda: bench_model(
                    create_model(preset), bs, None if model_dtype else dtype, train=train, compile=mode, device=DEV,
                    warmup=args.warmup, iters=args.iters, dpe=impl_dpe, grad_ckpt=opts.get("grad_ckpt", 0),
                    ckpt_policy=opts.get("ckpt_policy", "branches"), dtype=model_dtype or "fp32"))
            if r:
                record(label, impl, mode, r, note)
            free_memory()


def memory_phase(args, dpe):
    variants = [("training B/16 8x224", B16, SUITE_ROWS[3][2], [(6, "branches"), (12, "branches"), (12, "save_attention"),
                                                             (12, "block")]),
                ("training L/14 8x224", L14, SUITE_ROWS[4][2], [(12, "branches"), (24, "branches"), (24, "save_attention")])]
    for label, preset, bs, options in variants:
        for n, policy in options:
            if elapsed() > args.budget:
                say(f"  {label} ckpt {n} {policy}: skipped (time budget)")
                continue
            n = min(n, create_model(preset).cfg.depth) if DEV == "cpu" else n
            r = guarded(f"{label} ckpt", lambda: bench_model(create_model(preset), bs, "bf16", train=True, device=DEV,
                                                             warmup=args.warmup, iters=args.iters, dpe=dpe["eager"],
                                                             grad_ckpt=n, ckpt_policy=policy))
            if r:
                record(label, "ours", "none", r, note=f" ckpt {n} {policy}")
            free_memory()


def cudagraph_phase(args, dpe):
    if elapsed() > args.budget:
        say("  CUDA graphs: skipped (time budget)")
        return
    r = guarded("cudagraphs", lambda: bench_model(create_model(B16), SUITE_ROWS[0][2], "bf16",
                                                  compile="reduce-overhead", device=DEV, warmup=3, iters=args.iters,
                                                  dpe=dpe["compiled"]))
    if r:
        record("inference B/16 8x224", "ours", "reduce-overhead", r)
    free_memory()


def pipeline_phase(args, dpe):
    if elapsed() > args.budget + 60:
        say("  pipeline: skipped (time budget)")
        return None
    workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    small = DEV == "cpu"
    r = guarded("pipeline", lambda: bench_pipeline(B16, batch_size=2 if small else 32, workers=workers,
                                                   steps=1 if small else 5, videos=4 if small else 64,
                                                   amp="bf16", seconds=1.0 if small else 4.0, dpe=dpe["eager"],
                                                   device=DEV, verbose=False))
    if r:
        say(f"  pipeline: {r['clips_per_s']:.1f} clips/s with {workers} workers, data wait "
            f"{100 * r['data_wait_fraction']:.0f}%, {r['clips_per_core_s']:.1f} clips/s per worker core")
    return r


def final_table(pipeline):
    say("\n## Table (clips/s; peak memory; ratio to the official code on the same card, same run)")
    say("| workload | batch | dtype | impl | compile | clips/s | peak memory (GiB) | vs official eager | "
        "vs official compiled |")
    say("|---|---|---|---|---|---|---|---|---|")
    for label, preset, bs, train, dtype, _ in SUITE_ROWS:
        ref = ROWS.get((label, "official", "none", ""))
        ref_c = ROWS.get((label, "official", "full", ""))
        for (lab, impl, mode, note), r in ROWS.items():
            if lab != label:
                continue
            if r is None:
                say(f"| {label} | {bs} | {dtype} | {impl}{note} | {mode} | skipped | | | |")
                continue
            vs = f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x" if ref and impl == "ours" else ""
            vs_c = f"{r['clips_per_s'] / ref_c['clips_per_s']:.2f}x" if ref_c and impl == "ours" else ""
            say(f"| {label} | {bs} | {dtype} | {impl}{note} | {mode} | {r['clips_per_s']:.1f} | "
                f"{r['peak_mem_mb'] / 1024:.2f} | {vs} | {vs_c} |")
    if pipeline:
        say(f"\nInput pipeline (B/16 8x224 bs32 training, bf16, {pipeline['workers']} workers, generated 340x256 "
            f"H.264): {pipeline['clips_per_s']:.1f} clips/s, data wait {100 * pipeline['data_wait_fraction']:.0f}%, "
            f"{pipeline['clips_per_core_s']:.1f} clips/s per worker core.")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", help="official slowfast/models/uniformerv2_model.py (side by side)")
    p.add_argument("--out", default="gpu_table.md")
    p.add_argument("--budget", type=float, default=420.0, help="seconds after which phases are skipped")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=None, help="pipeline workers (default: CPU cores - 2)")
    p.add_argument("--dpe", choices=DPE_IMPLS, default=None, help="skip the DPE comparison and use this one "
                                                                  "(eager and compiled)")
    p.add_argument("--compile-all-full", action="store_true", help="'full' compile for every row (slow to compile)")
    p.add_argument("--skip", default="", help="comma list of phases to skip: numerics,dpe,compiled,memory,"
                                              "cudagraphs,pipeline")
    p.add_argument("--dry-run", action="store_true", help="check the script on the CPU with tiny models")
    args = p.parse_args()
    if args.dry_run:
        global DEV, B16, L14, SUITE_ROWS, DPE_SHAPE
        DEV, B16, L14, DPE_SHAPE = "cpu", "tiny_k400_8x64", "tiny_ssv2_8x64", (2, 8, 8, 64)
        SUITE_ROWS = [(label, {"k400_b16_8x224": B16, "ssv2_b16_16x224": L14, "k400_l14_8x224": B16}[preset], 2,
                       train, dtype, opts) for label, preset, _, train, dtype, opts in SUITE]
        args.iters, args.warmup, args.workers = 1, 1, args.workers or 0
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        sys.exit("gpu_suite.py needs a CUDA device (or --dry-run)")
    skip = set(filter(None, args.skip.split(",")))
    say(f"# UniFormerV2 GPU benchmark\n\n{header()}; CUDA {torch.version.cuda}; {os.cpu_count()} CPU cores; "
        f"TF32 on; bf16 autocast; clips/s = batch / mean step time after warm-up ({args.iters} timed steps)")
    if "numerics" not in skip:
        guarded("numerics", lambda: numerics(args))
    fixed = {"eager": args.dpe or "conv", "compiled": args.dpe or "conv"}
    dpe = fixed if (args.dpe or "dpe" in skip) else guarded("dpe", lambda: dpe_comparison(args)) or fixed
    say("\n## Measurements as they come")
    table_phase(args, dpe, compiled=False)
    if "compiled" not in skip:
        table_phase(args, dpe, compiled=True)
    if "memory" not in skip:
        memory_phase(args, dpe)
    if "cudagraphs" not in skip:
        cudagraph_phase(args, dpe)
    pipeline = None if "pipeline" in skip else pipeline_phase(args, dpe)
    final_table(pipeline)
    say(f"\nDPE implementation: `{dpe['eager']}` eager, `{dpe['compiled']}` compiled; total time {elapsed():.0f} s.")
    with open(args.out, "w") as f:
        f.write("\n".join(OUT) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
