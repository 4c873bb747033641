"""`uniformerv2 bench`: clips/s and peak memory of our model, the input pipeline, or the video decoder.

Comparisons with the official model code (CPU latency side by side, the GPU table) are scripts in
``benchmarks/`` of the source tree: ``benchmarks/cpu_vs_official.py`` and ``benchmarks/gpu_suite.py``.
"""
from __future__ import annotations

import sys

DPE_CHOICES = ("auto", "conv", "triton")  # accel.DPE_CHOICES, without importing torch for --help
COMPILE_CHOICES = ("none", "full", "regional", "reduce-overhead", "max-autotune")
POLICIES = ("branches", "block", "save_attention")


def add_parser(sub):
    p = sub.add_parser("bench", help="measure throughput and memory of a model, the input pipeline or the decoder",
                       description=__doc__.split("\n\n")[0])
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
    p.add_argument("--reference", action="store_true",
                   help="the reference model, without the speed variants of uniformerv2.accel.optimize")
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--dpe", choices=DPE_CHOICES, default="auto", help="DPE implementation (default: auto)")
    p.add_argument("--grad-ckpt", type=int, default=0, metavar="N",
                   help="activation checkpointing in the first N blocks (training)")
    p.add_argument("--ckpt-policy", choices=POLICIES, default="branches")
    p.add_argument("--out", metavar="FILE", help="also write the markdown table here")
    p.add_argument("--data", action="store_true", help="benchmark the video decoder (sparse reading vs decode all)")
    p.add_argument("--pipeline", action="store_true",
                   help="end-to-end training throughput with real decoding over --workers processes")
    p.add_argument("--workers", type=int, default=4, help="--pipeline: DataLoader worker processes")
    p.add_argument("--steps", type=int, default=10, help="--pipeline: timed steps")
    p.add_argument("--videos", type=int, default=32, help="--pipeline: dataset size (files are generated)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench import TABLE_HEAD, bench_model, bench_pipeline, header, table_row, threads
    from ..factory import create_model

    with threads(args.threads):
        if args.data:
            from ..data import benchmark

            benchmark.run()
            return 0
        mode = args.compile_mode or ("full" if args.compile else "none")
        lines = [header()]
        print(lines[0])
        if args.pipeline:
            r = bench_pipeline(args.preset, batch_size=args.batch_size, workers=args.workers, steps=args.steps,
                               videos=args.videos, dtype=args.dtype, device=args.device, compile=mode,
                               train=True, grad_ckpt=args.grad_ckpt)
            lines += ["| preset | batch | workers | clips/s | data wait | clips/s per worker core |",
                      "|---|---|---|---|---|---|",
                      f"| {r['preset']} | {r['batch_size']} | {r['workers']} | {r['clips_per_s']:.2f} | "
                      f"{100 * r['data_wait_fraction']:.0f}% | {r['clips_per_core_s']:.1f} |"]
            print("\n".join(lines[1:]))
        else:
            label = "training" if args.train else "inference"
            r = bench_model(create_model(args.preset), args.batch_size, args.dtype, train=args.train, compile=mode,
                            device=args.device, warmup=args.warmup, iters=args.iters, optimize=not args.reference,
                            dpe=args.dpe, grad_ckpt=args.grad_ckpt, ckpt_policy=args.ckpt_policy,
                            model_dtype=args.model_dtype)
            impl = "reference" if args.reference else "ours"
            lines += [TABLE_HEAD, table_row(label, impl, args.batch_size, r["precision"], r)]
            print("\n".join(lines[1:]))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
