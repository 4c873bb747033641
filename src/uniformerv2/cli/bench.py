"""`uniformerv2 bench`: clips/s and peak memory of a preset, optionally beside the official code."""
from __future__ import annotations

import sys

from ..bench import SUITE  # noqa: F401 - the standard table's workloads, re-exported

DPE_CHOICES = ("conv", "shift", "conv2d", "triton")  # model.layers.DPE_IMPLS, without importing torch
COMPILE_CHOICES = ("none", "full", "regional", "reduce-overhead", "max-autotune")


def add_parser(sub):
    p = sub.add_parser("bench", help="measure throughput and memory")
    p.add_argument("--preset", default="k400_b16_8x224")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype")
    p.add_argument("--model-dtype", choices=["bf16", "fp16"], default=None,
                   help="inference with the weights cast to this dtype, no autocast (what `predict` does)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (same as --compile-mode full)")
    p.add_argument("--compile-mode", choices=COMPILE_CHOICES, default=None,
                   help="full: one graph; regional: each block on its own (fast to compile); "
                        "reduce-overhead: CUDA graphs")
    p.add_argument("--train", action="store_true", help="time a training step (forward, backward, AdamW)")
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--dpe", choices=DPE_CHOICES, default=None, help="DPE implementation (default: conv)")
    p.add_argument("--grad-ckpt", type=int, default=None, metavar="N",
                   help="activation checkpointing in the first N blocks (training)")
    p.add_argument("--ckpt-policy", choices=["branches", "block", "save_attention"], default=None)
    p.add_argument("--official", metavar="FILE", help="official slowfast/models/uniformerv2_model.py to compare "
                   "with: on CPU fp32 latency with the same weights; on a GPU (or with --suite) a row of its own")
    p.add_argument("--suite", action="store_true", help="run the standard GPU table (markdown)")
    p.add_argument("--out", metavar="FILE", help="also write the markdown table here")
    p.add_argument("--data", action="store_true", help="benchmark the video decoder (sparse reading vs decode all)")
    p.add_argument("--pipeline", action="store_true",
                   help="end-to-end training throughput with real decoding over --workers processes")
    p.add_argument("--workers", type=int, default=4, help="--pipeline: DataLoader worker processes")
    p.add_argument("--steps", type=int, default=10, help="--pipeline: timed steps")
    p.add_argument("--videos", type=int, default=32, help="--pipeline: dataset size (files are generated)")
    p.set_defaults(func=run)


def _mode(args) -> str:
    return args.compile_mode or ("full" if args.compile else "none")


def run(args) -> int:
    import torch

    from ..bench import (TABLE_HEAD, bench_model, bench_official, bench_pipeline, compare_with_official, header,
                         perturbed_model, run_suite, table_row)
    from ..model.factory import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data:
        from ..data import benchmark

        benchmark.run()
        return 0
    lines = [header()]
    print(lines[0])
    if args.pipeline:
        r = bench_pipeline(args.preset, batch_size=args.batch_size, workers=args.workers, steps=args.steps,
                           videos=args.videos, dtype=args.dtype, device=args.device, compile=_mode(args),
                           train=True, grad_ckpt=args.grad_ckpt)
        lines += ["| preset | batch | workers | clips/s | data wait | clips/s per worker core |",
                  "|---|---|---|---|---|---|",
                  f"| {r['preset']} | {r['batch_size']} | {r['workers']} | {r['clips_per_s']:.2f} | "
                  f"{100 * r['data_wait_fraction']:.0f}% | {r['clips_per_core_s']:.1f} |"]
        print("\n".join(lines[1:]))
    elif args.suite:
        lines += run_suite(compile_modes=("none", args.compile_mode or "full"), official=args.official,
                           device=args.device, warmup=args.warmup, iters=args.iters, dpe=args.dpe)
    elif args.official and not torch.cuda.is_available() and args.device in (None, "cpu"):
        r = compare_with_official(args.official, args.preset, args.batch_size, args.iters)
        lines += [f"{args.preset} batch {args.batch_size} fp32 inference, {r['threads']} threads, same weights "
                  f"(max |logit diff| {r['max_abs_logit_diff']:.2e}), best of {args.iters} alternating runs:",
                  f"  wall: ours {r['ours_ms']:.0f} ms, official {r['official_ms']:.0f} ms -> {r['speedup']:.2f}x",
                  f"  CPU time: ours {r['ours_cpu_ms']:.0f} ms, official {r['official_cpu_ms']:.0f} ms -> "
                  f"{r['speedup_cpu']:.2f}x"]
        print("\n".join(lines[1:]))
    else:
        lines.append(TABLE_HEAD)
        print(TABLE_HEAD)
        label = "training" if args.train else "inference"
        ref = None
        if args.official:
            ref = bench_official(args.official, args.preset, args.batch_size, args.dtype, args.train, "none",
                                 args.device, args.warmup, args.iters)
            lines.append(table_row(label, "official", args.batch_size, args.dtype, ref))
            print(lines[-1])
        model = perturbed_model(args.preset) if args.official else create_model(args.preset)
        r = bench_model(model, args.batch_size, args.dtype, train=args.train, compile=_mode(args),
                        device=args.device, warmup=args.warmup, iters=args.iters, dpe=args.dpe,
                        grad_ckpt=args.grad_ckpt, ckpt_policy=args.ckpt_policy, model_dtype=args.model_dtype)
        lines.append(table_row(label, "ours", args.batch_size, r["precision"], r, ref))
        print(lines[-1])
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
