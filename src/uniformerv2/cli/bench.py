"""`uniformerv2 bench`: clips/s and peak memory of a preset, optionally beside the official code."""
from __future__ import annotations

# The GPU table of issue-level workloads: (label, preset, batch, train, dtype).
SUITE = [
    ("inference B/16 8x224", "k400_b16_8x224", 64, False, "bf16"),
    ("inference SSv2 B/16 16x224", "ssv2_b16_16x224", 32, False, "bf16"),
    ("inference L/14 8x224", "k400_l14_8x224", 32, False, "bf16"),
    ("training B/16 8x224", "k400_b16_8x224", 32, True, "bf16"),
    ("training L/14 8x224", "k400_l14_8x224", 16, True, "bf16"),
]


def add_parser(sub):
    p = sub.add_parser("bench", help="measure throughput and memory")
    p.add_argument("--preset", default="k400_b16_8x224")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--train", action="store_true", help="time a training step (forward, backward, AdamW)")
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--official", metavar="FILE", help="official slowfast/models/uniformerv2_model.py to compare with")
    p.add_argument("--suite", action="store_true", help="run the standard GPU table (markdown)")
    p.add_argument("--data", action="store_true", help="benchmark the video input pipeline instead")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench import bench_model, compare_with_official, header
    from ..model.factory import create_model

    if args.data:
        from ..data import benchmark

        benchmark.run()
        return 0
    print(header())
    if args.official:
        r = compare_with_official(args.official, args.preset, args.batch_size, args.iters)
        print(f"{args.preset} batch {args.batch_size} fp32 inference, same weights "
              f"(max |logit diff| {r['max_abs_logit_diff']:.2e}):")
        print(f"  ours {r['ours_ms']:.0f} ms, official {r['official_ms']:.0f} ms -> {r['speedup']:.2f}x")
        return 0
    rows = SUITE if args.suite else [("", args.preset, args.batch_size, args.train, args.dtype)]
    print("| workload | preset | batch | dtype | compiled | clips/s | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for label, preset, bs, train, dtype in rows:
        for compiled in ([False, True] if args.suite and not train else [args.compile]):
            model = create_model(preset)
            r = bench_model(model, bs, dtype, train=train, compile=compiled, device=args.device, iters=args.iters)
            label = label or ("training" if train else "inference")
            mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
            print(f"| {label} | {preset} | {bs} | {dtype} | {compiled} | {r['clips_per_s']:.1f} | {mem} |")
    return 0
